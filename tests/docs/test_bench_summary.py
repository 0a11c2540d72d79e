"""`make bench` writes bench/results/summary.md, the table the documents point to."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_lists_every_figure(tmp_path: Path) -> None:
    result = {
        "name": "wake",
        "title": "wake: demand frame -> magic packet",
        "time": "2026-11-29T23:00:00Z",
        "machine": {"cpus": 2, "python": "3.11", "kernel": "6.1"},
        "figures": [
            {"name": "reaction p99", "value": 0.25, "unit": "ms", "target": "< 3", "ok": True},
            {"name": "CPU", "value": 2.8, "unit": "%", "target": "", "ok": None},
        ],
        "series": {},
        "notes": [],
    }
    (tmp_path / "wake.json").write_text(json.dumps(result))
    (tmp_path / "fuzz.json").write_text(json.dumps({"wake": {"examples": {"n": 1}}}))
    out = load_run_all().write_markdown(tmp_path)
    lines = out.read_text().splitlines()
    assert out == tmp_path / "summary.md"
    assert (
        "| wake | reaction p99 | 0.25 ms | < 3 ms | meets | 2026-11-29T23:00:00Z, 2 CPUs |" in lines
    )
    assert "| wake | CPU | 2.8 % |  |  | 2026-11-29T23:00:00Z, 2 CPUs |" in lines
    assert sum(line.startswith("| wake |") for line in lines) == 2
