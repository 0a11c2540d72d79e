"""Figures a test run reports (counts, peaks) merged into one JSON file, e.g. for `make fuzz`.

Any test may call :func:`record` with its own section; nothing is written unless the file is
named by ``HEARTH_FIGURES_FILE`` (``make fuzz`` sets it to bench/results/fuzz.json), so the
ordinary test run leaves no files behind. Several processes may record at once: the file is
read, merged and replaced under an exclusive lock.

Layout: ``{section: {key: {figure: number, ...}, ...}, ...}``; e.g.
``record("rpcs", "direct hearth.wake.v1.WakeService/CreateHost", examples=50, failures=0)``
adds 50 and 0 to what that key already holds; ``how="max"`` keeps the larger value (peaks),
``how="set"`` replaces it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

ENV = "HEARTH_FIGURES_FILE"

Number = int | float


def figures_path() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def record(
    section: str,
    key: str,
    figures: Mapping[str, Number],
    how: Literal["sum", "max", "set"] = "sum",
    path: Path | None = None,
) -> None:
    """Merge ``figures`` into ``section``/``key`` of the figures file (if one is set)."""
    target = path or figures_path()
    if target is None:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(target.read_text()) if target.exists() else {}
        except json.JSONDecodeError:
            data = {}  # a torn file from a killed run: start again rather than fail the test
        entry = data.setdefault(section, {}).setdefault(key, {})
        for name, value in figures.items():
            old = entry.get(name)
            if how == "set" or old is None:
                entry[name] = value
            elif how == "max":
                entry[name] = max(old, value)
            else:
                entry[name] = old + value
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(target)


def read(path: Path | None = None) -> dict[str, dict[str, dict[str, Number]]]:
    """The figures recorded so far (empty if none or no file is set)."""
    target = path or figures_path()
    if target is None or not target.exists():
        return {}
    data: dict[str, dict[str, dict[str, Number]]] = json.loads(target.read_text())
    return data


def summarize(path: Path) -> dict[str, Number]:
    """Add up the per-key counts of section "rpcs" into "totals"/"all" and return them.

    ``failures`` counts failing calls of RPCs without a known finding; ``known_failures``
    those of RPCs whose test is marked with a known finding (xfail).
    """
    data = read(path)
    totals: dict[str, Number] = {"examples": 0, "failures": 0, "known_failures": 0, "rpcs": 0}
    for figures in data.get("rpcs", {}).values():
        totals["rpcs"] += 1
        totals["examples"] += figures.get("examples", 0)
        if figures.get("known_finding"):
            totals["known_failures"] += figures.get("failures", 0)
        else:
            totals["failures"] += figures.get("failures", 0)
    for section, entries in data.items():
        if section not in ("rpcs", "totals"):
            for figures in entries.values():
                for name, value in figures.items():
                    if name in (
                        "documents",
                        "datagrams",
                        "items",
                        "stored_items_checked_after_restart",
                    ):
                        totals[f"{section}.{name}"] = totals.get(f"{section}.{name}", 0) + value
    record("totals", "all", totals, how="set", path=path)
    return totals


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "summarize":
        path = Path(argv[1])
        if not path.exists():
            print(f"{path}: no figures recorded")
            return 0
        totals = summarize(path)
        print(f"{path}: " + ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))
        return 0
    print("usage: python -m hearth_testing.figures summarize FILE")
    return 2


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
