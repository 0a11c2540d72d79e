# ruff: noqa: F811  (pytest fixtures imported from hearth_ci.testkit are parameters here)
"""Generated upstream documents: structural mutations of the recorded Zuul documents and
generated Gerrit answers. In-process (fast, many examples) through the parsers, the
dashboard and the terminal rendering; and a few served by the replay server to a real
hearth-ci process.

Invariants: no exception but a refusal (SourceError/ZuulFormatError); every string that
comes out is neutral; the dashboard builds and renders without an escape character; the
process keeps answering (health SERVING, or NOT_SERVING with Zuul's error shown) and
recovers when a good document returns; its memory stays bounded.

Budget: ``HEARTH_FUZZ_EXAMPLES`` (default 40) examples per in-process test and a twentieth
of it (at least 3) for the process test; ``make fuzz`` raises it.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci import filters
from hearth_ci.dash import render
from hearth_ci.dashboard import build_dashboard, combine
from hearth_ci.replay import control_sync, default_fixtures, v3_shape, v10_shape
from hearth_ci.sources import SourceError, parse_changes, strip_guard
from hearth_ci.testkit import replay_url  # noqa: F401  # a fixture
from hearth_ci.upstream import Reader, Refused, load_json
from hearth_ci.zuul import ZuulFormatError, ZuulStatus, parse_status
from hearth_testing import ServiceProcess, metric_value, scrape, wait_for
from hearth_testing.figures import record

EXAMPLES = int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "40"))
PROCESS_EXAMPLES = max(3, EXAMPLES // 20)
DEEP = "__hearth_deep__"


def _recorded() -> list[dict[str, Any]]:
    docs = []
    for name in ("v2-status-basic.json", "v2-status-tree.json"):
        doc = json.loads((default_fixtures() / name).read_text())
        docs += [doc, v3_shape(doc), v10_shape(doc)]
    return docs


RECORDED = _recorded()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([1e20, -1, 0, 2**31, 2**63, 10**30, 1.5, 4_102_444_800_001])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["\x1b[2J", "javascript:alert(1)", "12345,6", "", "SUCCESS", "\u202e"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*path, i))


def _mutate(doc: Any, path: tuple[Any, ...], kind: str, value: Any) -> Any:
    if not path:
        return value if kind in ("replace", "retype") else doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if kind == "drop":
        del parent[key]
    elif kind == "replace":
        parent[key] = value
    elif kind == "retype":
        old = parent[key]
        parent[key] = (
            [old] if isinstance(old, dict) else {"v": old} if isinstance(old, list) else [old]
        )
    elif kind == "null_in_list" and isinstance(parent, list):
        parent.insert(key, None)
    elif kind == "deep":
        parent[key] = DEEP
    return doc


@st.composite
def zuul_bodies(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(draw(st.sampled_from(RECORDED)))
    depth = draw(st.integers(min_value=10, max_value=5000))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        paths = list(_paths(doc))
        path = paths[draw(st.integers(min_value=0, max_value=len(paths) - 1))]
        kind = draw(st.sampled_from(["drop", "replace", "retype", "null_in_list", "deep"]))
        doc = _mutate(doc, path, kind, draw(json_values))
    text = json.dumps(doc, allow_nan=True)  # NaN/Infinity literals, as a broken Zuul might
    return text.replace(json.dumps(DEEP), "[" * depth + "]" * depth).encode()


change_infos = st.fixed_dictionaries(
    {"_number": st.integers(min_value=1, max_value=99_999)},
    optional={
        "project": json_values,
        "subject": st.text(max_size=40) | json_values,
        "owner": st.fixed_dictionaries({}, optional={"name": json_values, "username": scalars})
        | json_values,
        "current_revision": scalars,
        "revisions": json_values,
        "starred": scalars,
        "updated": scalars,
    },
)
gerrit_answers = st.lists(change_infos | json_values, max_size=8)


@st.composite
def gerrit_bodies(draw: st.DrawFn) -> tuple[int, str]:
    queries = draw(st.integers(min_value=1, max_value=3))
    if draw(st.booleans()):
        data: Any = [draw(gerrit_answers) for _ in range(queries)]
        data = data if queries > 1 else data[0]
    else:
        data = draw(json_values)
    guard = draw(st.sampled_from([")]}'\n", ")]}'\n", ""]))
    return queries, guard + json.dumps(data, allow_nan=True)


def _neutral(text: str) -> bool:
    return text.isprintable()


def _check_dashboard(status: ZuulStatus | None, matches: Any) -> None:
    flt = ci_pb2.Filter(user="danms", projects=["openstack/nova"], starred=True)
    dash = build_dashboard(status, matches, flt, everything=True)
    dash.SerializeToString()
    screen = "\n".join(render(dash, colour=False))
    assert "\x1b" not in screen and all(_neutral(line) for line in screen.splitlines())


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
@given(body=zuul_bodies())
def test_any_zuul_document_parses_or_is_refused(body: bytes) -> None:
    record("documents", "zuul, in-process", {"tried": 1})
    try:
        status = parse_status(load_json(body, "zuul"), Reader("zuul"))
    except (Refused, ZuulFormatError):
        return
    for pipeline in status.pipelines:
        assert _neutral(pipeline.name)
        for queue in pipeline.queues:
            for item in queue.items:
                assert item.refs and all(_neutral(r.project) and _neutral(r.url) for r in item.refs)
                assert item.enqueue_ms is None or item.enqueue_ms >= 946_684_800_000
                for job in item.jobs:
                    assert _neutral(job.name) and not job.url.startswith("javascript")
    assert _neutral(status.message)
    _check_dashboard(status, None)


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
@given(answer=gerrit_bodies())
def test_any_gerrit_answer_parses_or_is_refused(answer: tuple[int, str]) -> None:
    record("documents", "gerrit, in-process", {"tried": 1})
    queries, body = answer
    cache: dict[int, Any] = {}
    try:
        parsed = parse_changes(strip_guard(body), queries, Reader("gerrit"), cache)
        again = parse_changes(strip_guard(body), queries, Reader("gerrit"), cache)
    except SourceError:
        return
    assert len(parsed.lists) == queries and again.lists == parsed.lists
    for change in (c for answer in parsed.lists for c in answer):
        assert 0 < change.number < 2**31 and isinstance(change.starred, bool)
        assert all(_neutral(t) for t in (change.subject, change.project, change.owner_name))
    flt = ci_pb2.Filter(owners=[f"o{i}" for i in range(queries)][:1], starred=queries > 1)
    if queries == 3:
        flt.topic = "t"
    groups = filters.effective_groups(flt)
    if len(groups) == queries:
        status = parse_status(RECORDED[1], Reader("zuul"))
        _check_dashboard(status, combine(groups, parsed.lists, flt.operator))


# ------------------------------------------------------------------ a real process


@pytest.fixture(scope="module")
def service(replay_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    state = tmp_path_factory.mktemp("ci-fuzz")
    env = {
        "HEARTH_CI_GRPC_LISTEN": "127.0.0.1:0",
        "HEARTH_CI_METRICS_LISTEN": "127.0.0.1:0",
        "HEARTH_CI_STATE_DIR": str(state),
        "HEARTH_CI_ZUUL_URL": replay_url,
        "HEARTH_CI_ZUUL_TENANT": "openstack",
        "HEARTH_CI_GERRIT_URL": replay_url,
        "HEARTH_CI_IDLE_POLL_SECONDS": "0.1",
        "HEARTH_CI_DEFAULT_REFRESH_SECONDS": "0.2",
        "HEARTH_CI_MIN_REFRESH_SECONDS": "0.1",
        "HEARTH_CI_BACKOFF_BASE_SECONDS": "0.05",
        "HEARTH_CI_BACKOFF_MAX_SECONDS": "0.2",
        "HEARTH_CI_HTTP_TIMEOUT_SECONDS": "2",
        "HEARTH_CI_SHUTDOWN_GRACE_SECONDS": "1",
    }
    with ServiceProcess("ci", env=env) as proc:
        yield proc


FLT = ci_pb2.Filter(user="danms", projects=["openstack/nova"])


def _answers(address: str) -> tuple[int, ci_pb2.Dashboard]:
    """Health and a dashboard; any RPC error fails the test (no UNKNOWN, no INTERNAL)."""
    with grpc.insecure_channel(address) as chan:
        health = health_pb2_grpc.HealthStub(chan).Check(
            health_pb2.HealthCheckRequest(service="hearth.ci.v1.CiService"), timeout=10
        )
        stub = ci_pb2_grpc.CiServiceStub(chan)
        dash: ci_pb2.Dashboard = stub.GetDashboard(
            ci_pb2.GetDashboardRequest(filter=FLT), timeout=10
        )
        stub.ListPipelines(ci_pb2.ListPipelinesRequest(), timeout=10)
    return int(health.status), dash


@settings(
    max_examples=PROCESS_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(zuul=zuul_bodies(), gerrit=gerrit_bodies())
def test_a_real_process_takes_generated_documents(
    service: Any, replay_url: str, zuul: bytes, gerrit: tuple[int, str]
) -> None:
    record("documents", "zuul + gerrit, served to a real hearth-ci", {"tried": 1})
    start_rss = metric_value(scrape(service.metrics_address), "process_resident_memory_bytes")
    polls = control_sync(replay_url, zuul_raw=zuul.decode(), gerrit_raw=gerrit[1])["counters"]
    wait_for(
        "two Zuul polls of the document",
        lambda: control_sync(replay_url)["counters"].get("zuul", 0) >= polls.get("zuul", 0) + 2,
    )
    health, dash = _answers(service.grpc_address)
    zuul_health = next(s for s in dash.sources if s.source == ci_pb2.UPSTREAM_ZUUL)
    if health != health_pb2.HealthCheckResponse.SERVING:
        assert not zuul_health.ok and zuul_health.error.startswith("Zuul")  # with a reason
    control_sync(replay_url, zuul_raw=None, gerrit_raw=None, touch=True)

    def recovered() -> bool:
        health, dash = _answers(service.grpc_address)
        return health == health_pb2.HealthCheckResponse.SERVING and not dash.stale

    wait_for("recovery with the recorded document", recovered, timeout=20)
    rss = metric_value(scrape(service.metrics_address), "process_resident_memory_bytes")
    assert start_rss is not None and rss is not None
    assert rss < max(start_rss * 2, start_rss + 150e6), (start_rss, rss)
    assert "Traceback" not in service.output
