"""Every service has one shape: app.py (its state and tasks, an XApp started and closed by
the runtime), service.py (XServicer, a thin face that uses the app's public members only)
and main.py (SPEC, a ServiceSpec of a few lines)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from hearth_runtime import ServiceSpec
from hearth_runtime.ports import SERVICES
from hearth_runtime.version import VERSION

ROOT = Path(__file__).resolve().parents[2]


def package(service: str) -> Path:
    return ROOT / "services" / service / f"hearth_{service}"


def private_uses(source: str) -> list[str]:
    """Private attributes reached through anything but ``self``: ``self.app._x``, ``app._x``
    (the servicer's own helpers, ``self._x``, are its business)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_private_access_check_sees_what_it_forbids() -> None:
    assert private_uses("self.audio._publish(1)\napp._zone_status.pop(z)\n") == [
        "line 1: self.audio._publish",
        "line 2: app._zone_status",
    ]
    assert private_uses("self._find(x)\nself.app.publish(1)\n") == []


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_app_service_and_main(service: str) -> None:
    for module in ("app.py", "service.py", "main.py"):
        assert (package(service) / module).is_file(), f"hearth_{service}/{module}"


@pytest.mark.parametrize("service", SERVICES)
def test_main_is_a_spec_of_a_few_lines(service: str) -> None:
    source = (package(service) / "main.py").read_text()
    tree = ast.parse(source)
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name)}  # fmt: skip
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert "SPEC" in assigned and functions == ["main"], (assigned, functions)
    assert len(source.splitlines()) <= 30

    spec = importlib.import_module(f"hearth_{service}.main").SPEC
    name = "Ci" if service == "ci" else service.capitalize()
    assert isinstance(spec, ServiceSpec) and spec.name == service and spec.setup is None
    assert spec.version == VERSION
    assert spec.app is not None and spec.servicer is not None and spec.register is not None
    assert (spec.app.__module__, spec.app.__name__) == (f"hearth_{service}.app", f"{name}App")
    assert (spec.servicer.__module__, spec.servicer.__name__) == (
        f"hearth_{service}.service",
        f"{name}Servicer",
    )
    assert spec.service_name.startswith(f"hearth.{service}.v1.")


@pytest.mark.parametrize("service", SERVICES)
def test_the_app_is_started_and_closed_by_the_runtime(service: str) -> None:
    app = importlib.import_module(f"hearth_{service}.main").SPEC.app
    for verb in ("start", "close"):
        assert callable(getattr(app, verb, None)), f"{app.__name__}.{verb}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_servicer_touches_no_private_member_of_the_app(service: str) -> None:
    assert private_uses((package(service) / "service.py").read_text()) == []


@pytest.mark.parametrize("service", SERVICES)
def test_state_files_are_named_after_the_service(service: str) -> None:
    """``state_file(state_dir, "<service>")``: <state_dir>/<service>.sqlite3 everywhere."""
    for path in package(service).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "state_file":
                named = node.args[1]
                assert isinstance(named, ast.Constant) and named.value == service, path.name
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and text.endswith(".sqlite3"):
                assert text == f"{service}.sqlite3", (path.name, text)
