"""No background task or thread in product code escapes the runtime's supervisor.

Product code starts tasks with ``Runtime.spawn`` / ``Supervisor.spawn`` and threads with
``Supervisor.spawn_thread``: a crash there is logged, counted, restarted and shown in
health. A bare ``asyncio.create_task``, ``ensure_future``, ``loop.create_task`` or
``threading.Thread`` would die silently, so this test fails on any of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {ROOT / "lib/hearth_runtime/supervisor.py"}
FORBIDDEN_CALLS = {"create_task", "ensure_future", "Thread", "start_new_thread"}


def _product_files() -> list[Path]:
    files = sorted((ROOT / "lib/hearth_runtime").glob("*.py"))
    for package in sorted((ROOT / "services").glob("*/hearth_*")):
        files += sorted(package.rglob("*.py"))  # all product: the lab lives in lab/
    return [f for f in files if f not in ALLOWED]


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in FORBIDDEN_CALLS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...)")
    return found


def test_the_scan_sees_product_code() -> None:
    files = _product_files()
    assert any(f.name == "engine.py" for f in files) and len(files) > 40
    assert _violations(ROOT / "lib/hearth_runtime/supervisor.py")  # the scan does find calls


def test_no_unsupervised_task_or_thread_in_product_code() -> None:
    violations = [v for path in _product_files() for v in _violations(path)]
    assert not violations, "start these through the runtime's supervisor:\n" + "\n".join(violations)
