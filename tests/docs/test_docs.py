"""The documents stay true to the tree: the README's layout block lists what is there, every
relative link resolves, every setting and every metric of a service is in its document.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import REGISTRY
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SERVICES = ("wake", "audio", "ci", "gateway")
MAX_README_LINES = 250

# Metrics every service has (hearth_runtime): documented once, in docs/runtime.md.
RUNTIME_METRIC_PREFIXES = ("grpc_server_", "hearth_service_", "hearth_task_", "hearth_build")


def tracked_files() -> list[str]:
    """Files in git plus new ones not ignored: what a commit of this tree would hold."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if (ROOT / line).exists()]


def folders(files: list[str], depth: int) -> set[str]:
    """Folders ``depth`` levels deep that hold a tracked file, as ``a/`` or ``a/b/``."""
    return {"/".join(f.split("/")[:depth]) + "/" for f in files if f.count("/") >= depth}


def layout_entries() -> list[str]:
    """The paths of the README's layout block: the first fenced block under ## Layout."""
    text = README.read_text()
    section = text.split("\n## Layout\n", 1)
    assert len(section) == 2, "README.md has no '## Layout' section"
    block = re.search(r"^```\n(.*?)^```", section[1], re.S | re.M)
    assert block, "the README's Layout section has no fenced block"
    entries = []
    for line in block.group(1).splitlines():
        match = re.match(r"^(\S+)\s{2,}\S", line)
        assert match, f"layout line is not 'path  description': {line!r}"
        entries.append(match.group(1))
    return entries


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES})"


def test_readme_test_command_is_what_ci_runs() -> None:
    assert "make test" in README.read_text()
    assert re.search(r"^make test\b", (ROOT / ".ci" / "run").read_text(), re.M)


def test_layout_paths_exist() -> None:
    missing = [entry for entry in layout_entries() if not (ROOT / entry).exists()]
    assert not missing, f"the README's layout lists paths that do not exist: {missing}"
    not_dirs = [e for e in layout_entries() if e.endswith("/") and not (ROOT / e).is_dir()]
    assert not not_dirs, f"listed as folders but not folders: {not_dirs}"


def test_layout_lists_every_top_level_folder_and_service() -> None:
    listed = set(layout_entries())
    files = tracked_files()
    unlisted = sorted(folders(files, 1) - listed)
    assert not unlisted, f"top-level folders missing from the README's layout: {unlisted}"
    services = {f"services/{p.name}/" for p in (ROOT / "services").iterdir() if p.is_dir()}
    services &= folders(files, 2)
    assert services, "no services/<svc>/ folder found"
    unlisted = sorted(services - listed)
    assert not unlisted, f"services missing from the README's layout: {unlisted}"


def test_layout_lists_whole_folders() -> None:
    """A folder whose subfolders the layout lists one by one (lib/, services/, ...) is listed
    completely: no package or service hides behind a partial list."""
    listed = set(layout_entries())
    second = folders(tracked_files(), 2)
    enumerated = {e.split("/")[0] + "/" for e in listed if e.endswith("/") and e.count("/") == 2}
    unlisted = sorted(f for f in second if f.split("/")[0] + "/" in enumerated and f not in listed)
    assert not unlisted, f"folders missing from the README's layout: {unlisted}"


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link)]


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for link in relative_links(path):
        target, _, anchor = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.exists() or (
            anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)
        ):
            broken.append(link)
    assert not broken, f"{path.relative_to(ROOT)}: links that do not resolve: {broken}"


def test_every_service_has_a_document() -> None:
    for service in SERVICES:
        assert (DOCS / f"{service}.md").is_file(), f"docs/{service}.md is missing"
    assert (DOCS / "operations.md").is_file()


def config_models(service: str) -> list[type[BaseModel]]:
    """The config class of the service and every model defined beside it (HostEntry, ...)."""
    module = importlib.import_module(f"hearth_{service}.config")
    models = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == module.__name__
    ]
    assert models, f"hearth_{service}.config defines no settings class"
    return models


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_is_documented(service: str) -> None:
    doc = (DOCS / f"{service}.md").read_text()
    missing = [
        f"{model.__name__}.{field}"
        for model in config_models(service)
        for field in model.model_fields
        if f"`{field}`" not in doc
    ]
    assert not missing, f"docs/{service}.md does not mention these settings: {missing}"


def settings_table(doc: str) -> set[str]:
    """The names in the first column of the table under a document's ## Settings."""
    section = doc.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in re.findall(r"^\|([^|]*)\|", section, re.M):
        names.update(re.findall(r"`([a-z_0-9]+)`", row))
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_every_documented_setting_exists(service: str) -> None:
    doc = (DOCS / f"{service}.md").read_text()
    assert "\n## Settings\n" in doc, f"docs/{service}.md has no ## Settings section"
    fields = {field for model in config_models(service) for field in model.model_fields}
    listed = settings_table(doc)
    assert listed, f"docs/{service}.md: no settings table"
    stale = sorted(listed - fields)
    assert not stale, f"docs/{service}.md lists settings that do not exist: {stale}"


def import_all(package: str) -> None:
    root: ModuleType = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)


def registered_metrics() -> dict[str, str]:
    """Every metric name as Prometheus scrapes it -> its family name, for hearth's code."""
    import_all("hearth_runtime")
    for service in SERVICES:
        import_all(f"hearth_{service}")
    names: dict[str, str] = {}
    for family in REGISTRY.collect():
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names[family.name + suffix] = family.name
    return names


def documented_metric_names(doc: str, prefix: str) -> set[str]:
    return set(re.findall(rf"`({re.escape(prefix)}[a-z0-9_]+)", doc))


@pytest.mark.parametrize("service", SERVICES)
def test_every_metric_is_documented(service: str) -> None:
    prefix = f"hearth_{service}_"
    registered = {n for n in registered_metrics() if n.startswith(prefix)}
    assert registered, f"no metric named {prefix}* registered"
    doc = (DOCS / f"{service}.md").read_text()
    documented = documented_metric_names(doc, prefix)
    assert not registered - documented, (
        f"docs/{service}.md does not name these metrics: {sorted(registered - documented)}"
    )
    assert not documented - registered, (
        f"docs/{service}.md names metrics that do not exist: {sorted(documented - registered)}"
    )


def test_runtime_metrics_are_documented() -> None:
    metrics = registered_metrics()
    doc = (DOCS / "runtime.md").read_text()
    runtime = {n for n in metrics if n.startswith(RUNTIME_METRIC_PREFIXES)}
    assert runtime, "no runtime metric registered"
    missing = sorted(n for n in runtime if f"`{n}`" not in doc)
    assert not missing, f"docs/runtime.md does not name these metrics: {missing}"
    owned = (*RUNTIME_METRIC_PREFIXES, *(f"hearth_{s}_" for s in SERVICES))
    orphans = sorted(
        n for n in metrics if n.startswith(("hearth_", "grpc_")) and not n.startswith(owned)
    )
    assert not orphans, f"metrics no document is responsible for: {orphans}"


# Upper-case words the documents may show that are not enum values of hearth's contracts.
NOT_ENUMS = {"DEBUG", "INFO", "WARNING", "ERROR", "HEALTHCHECK"}
NOT_ENUM_PREFIXES = ("CAP_", "SO_", "NET_", "HEARTH_", "GF_")
# google.rpc.ErrorInfo reasons hearth sets; each must still be in the code (checked below).
ERROR_REASONS = {
    "TOKEN_REQUIRED",
    "INVALID_TOKEN",
    "ROLE_REQUIRED",
    "RATE_LIMITED",
    "BACKEND_UNAVAILABLE",
    "BACKEND_ANSWER_UNREADABLE",
}


def contract_enum_values() -> set[str]:
    """Every enum value name of hearth's contracts (top-level and nested enums)."""
    from google.protobuf.descriptor import Descriptor

    names: set[str] = set()

    def nested(message: Descriptor) -> None:
        for enum in message.enum_types:
            names.update(value.name for value in enum.values)
        for inner in message.nested_types:
            nested(inner)

    for path in sorted((ROOT / "protos" / "hearth").glob("*/v1/*.proto")):
        package, version = path.parent.parent.name, path.parent.name
        module = importlib.import_module(f"hearth.{package}.{version}.{path.stem}_pb2")
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            names.update(value.name for value in enum.values)
        for message in module.DESCRIPTOR.message_types_by_name.values():
            nested(message)
    return names


def test_error_reasons_exist() -> None:
    sources = [
        *(ROOT / "services").rglob("*.py"),
        *(ROOT / "services").rglob("*.rs"),
        *(ROOT / "lib").rglob("*.py"),
    ]
    code = "\n".join(p.read_text() for p in sources)
    stale = sorted(reason for reason in ERROR_REASONS if f'"{reason}"' not in code)
    assert not stale, f"error reasons no longer in the code: {stale}"


@pytest.mark.parametrize("name", [*SERVICES, "runtime"])
def test_enum_names_are_real(name: str) -> None:
    """Enum names in a document (`AWAKE` in the text, "AWAKE" in a JSON example) are the
    contracts' names of today: a renamed value fails here until the document follows."""
    import grpc
    from grpc_health.v1 import health_pb2

    known = contract_enum_values() | NOT_ENUMS | ERROR_REASONS
    known |= {code.name for code in grpc.StatusCode}
    known |= set(health_pb2.HealthCheckResponse.ServingStatus.keys())
    text = (DOCS / f"{name}.md").read_text()
    words = set(re.findall(r'[`"]([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)[`"]', text))
    unknown = sorted(w for w in words - known if not w.startswith(NOT_ENUM_PREFIXES))
    assert not unknown, f"docs/{name}.md shows enum names the contracts do not have: {unknown}"
