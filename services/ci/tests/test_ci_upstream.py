# ruff: noqa: F811  (fixtures come from hearth_ci.testkit; tests take them as arguments)
"""Issue 11: a malformed Zuul or Gerrit answer never ends a poller. The bad document is
refused (counted, logged once, shown as the source's error), the last good data stays,
and the next good document recovers by itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci.dashboard import UPSTREAMS
from hearth_ci.replay import ReplayServer, control
from hearth_ci.testkit import channel, ci, dashboard_when, fixtures_dir, replay, stub  # noqa: F401  # fixtures
from hearth_testing import wait_for_async

FLT = ci_pb2.Filter(user="danms", projects=["openstack/nova"])
INLINE = ci_pb2.GetDashboardRequest(filter=FLT)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Refused whole: the last good data stays, the source reports the error.
REFUSED_ZUUL = {
    "deep nesting": '{"pipelines": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "Infinity": '{"pipelines": [], "last_reconfigured": Infinity}',
    "NaN length": '{"pipelines": [], "trigger_event_queue": {"length": NaN}}',
    "not an object": "[1, 2]",
    "pipelines null": '{"pipelines": null}',
}
_HUGE_TIME = {
    "name": "gate",
    "change_queues": [
        {"name": "q", "heads": [[{"id": "1,1", "project": "p", "enqueue_time": 1e20}]]}
    ],
}
# Accepted with the malformed parts skipped (counted, shown as the source's warning).
SKIPPED_ZUUL = {
    "null pipeline": '{"pipelines": [null]}',
    "1e999": '{"pipelines": [], "last_reconfigured": 1e999}',
    "wrong types": '{"pipelines": [{"name": 5, "change_queues": {"heads": 7}}, "x", 3]}',
    "huge enqueue_time": json.dumps({"pipelines": [_HUGE_TIME]}),
    "nulls in lists": '{"pipelines": [{"name": "g", "change_queues": [null, {"heads": '
    '[null, [null, 1, {"id": null, "jobs": [null, {"name": ["x"]}]}]]}]}]}',
}
REFUSED_GERRIT = {
    "object": ')]}\'\n{"a": 1}',
    "Infinity": ')]}\'\n[{"_number": Infinity}]',
    "string": ')]}\'\n"changes"',
    "deep": ")]}'\n" + "[" * 50_000 + "]" * 50_000,
}
SKIPPED_GERRIT = {
    "list of numbers": ")]}'\n[1, 2, null]",
    "bad _number": ')]}\'\n[{"_number": "x"}, {"_number": 1e300}, {"_number": true}]',
}


def _source(dash: ci_pb2.Dashboard, name: str) -> ci_pb2.SourceHealth:
    return next(s for s in dash.sources if s.source == UPSTREAMS[name])


async def _health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="hearth.ci.v1.CiService")
    )
    return int(reply.status)


def _fresh(dash: ci_pb2.Dashboard) -> bool:
    return dash.matching_items > 0 and not dash.stale and all(s.ok for s in dash.sources)


@pytest.mark.parametrize("doc", list(REFUSED_ZUUL.values()), ids=list(REFUSED_ZUUL))
async def test_a_bad_zuul_document_is_refused_and_the_poller_recovers(
    stub: Any, channel: grpc.aio.Channel, replay: ReplayServer, doc: str
) -> None:
    good = await dashboard_when(stub, INLINE, "fresh data", _fresh)
    await control(replay.url, zuul_raw=doc)
    bad = await dashboard_when(
        stub, INLINE, "Zuul's document refused", lambda d: not _source(d, "zuul").ok
    )
    assert _source(bad, "zuul").error.startswith("Zuul")  # says which source, and why
    assert bad.stale and bad.matching_items == good.matching_items  # last good data stays
    assert await _health(channel) == NOT_SERVING
    await control(replay.url, zuul_raw=None, touch=True)
    await dashboard_when(stub, INLINE, "recovered", _fresh)
    assert await _health(channel) == SERVING


@pytest.mark.parametrize("doc", list(SKIPPED_ZUUL.values()), ids=list(SKIPPED_ZUUL))
async def test_malformed_zuul_parts_are_skipped_and_shown(
    stub: Any, channel: grpc.aio.Channel, replay: ReplayServer, doc: str
) -> None:
    await dashboard_when(stub, INLINE, "fresh data", _fresh)
    await control(replay.url, zuul_raw=doc)
    odd = await dashboard_when(
        stub, INLINE, "the skipped parts shown", lambda d: bool(_source(d, "zuul").warning)
    )
    assert _source(odd, "zuul").ok and "skipped malformed parts" in _source(odd, "zuul").warning
    assert await _health(channel) == SERVING
    await stub.ListPipelines(ci_pb2.ListPipelinesRequest())  # still answers
    await control(replay.url, zuul_raw=None, touch=True)
    again = await dashboard_when(stub, INLINE, "recovered", _fresh)
    assert not _source(again, "zuul").warning


@pytest.mark.parametrize("doc", list(REFUSED_GERRIT.values()), ids=list(REFUSED_GERRIT))
async def test_a_bad_gerrit_answer_is_refused_and_the_watch_recovers(
    stub: Any, replay: ReplayServer, doc: str
) -> None:
    watch = ci_pb2.Watch(filter=FLT)
    await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="mine", watch=watch))
    req = ci_pb2.GetDashboardRequest(watch="watches/mine")
    good = await dashboard_when(stub, req, "fresh data", _fresh)
    await control(replay.url, gerrit_raw=doc)
    bad = await dashboard_when(
        stub, req, "Gerrit's answer refused", lambda d: not _source(d, "gerrit").ok
    )
    assert _source(bad, "gerrit").error.startswith("Gerrit")
    assert bad.matching_items == good.matching_items and bad.stale
    # An inline dashboard's query meets the same answer: an error shown, not a failed call.
    inline = await stub.GetDashboard(ci_pb2.GetDashboardRequest(filter=ci_pb2.Filter(user="x")))
    assert not _source(inline, "gerrit").ok
    await control(replay.url, gerrit_raw=None)
    await dashboard_when(stub, req, "recovered", _fresh)


@pytest.mark.parametrize("doc", list(SKIPPED_GERRIT.values()), ids=list(SKIPPED_GERRIT))
async def test_malformed_gerrit_changes_are_skipped_and_shown(
    stub: Any, replay: ReplayServer, doc: str
) -> None:
    watch = ci_pb2.Watch(filter=FLT)
    await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="mine", watch=watch))
    req = ci_pb2.GetDashboardRequest(watch="watches/mine")
    await dashboard_when(stub, req, "fresh data", _fresh)
    await control(replay.url, gerrit_raw=doc)
    odd = await dashboard_when(
        stub, req, "skipped changes shown", lambda d: bool(_source(d, "gerrit").warning)
    )
    assert _source(odd, "gerrit").ok and "change" in _source(odd, "gerrit").warning
    await control(replay.url, gerrit_raw=None)
    again = await dashboard_when(
        stub, req, "recovered", lambda d: _fresh(d) and not _source(d, "gerrit").warning
    )
    assert again.matching_items > 0


async def test_a_zuul_project_name_with_escapes_is_neutral_everywhere(
    stub: Any, replay: ReplayServer, fixtures_dir: Path
) -> None:
    from hearth_ci.dash import render

    doc = json.loads((fixtures_dir / "v2-status-basic.json").read_text())
    evil = 0
    for pipeline in doc["pipelines"]:
        for queue in pipeline["change_queues"]:
            for head in queue["heads"]:
                for item in head:
                    item["project"] = "openstack/nova\x1b[2J\x9b31m"
                    for job in item.get("jobs") or []:
                        job["name"] = "tempest\x1b]0;owned\x07"
                        job["url"] = "javascript:alert(1)"
                    evil += 1
    doc["message"] = "banner\x1b[2J"
    assert evil
    await control(replay.url, upload=doc)

    async def escaped() -> ci_pb2.ListPipelinesResponse | None:
        reply = await stub.ListPipelines(ci_pb2.ListPipelinesRequest())
        return reply if "banner" in reply.zuul.message else None

    reply = await wait_for_async("the escaped document", escaped, within=30)
    assert reply is not None
    dash = ci_pb2.Dashboard(pipelines=reply.pipelines, zuul=reply.zuul)
    assert sum(len(q.items) for p in dash.pipelines for q in p.queues) == evil
    text = "\n".join(render(dash, colour=False))
    assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text
    assert "\\x1b[2J" in text  # shown, escaped, not executed
    serialized = dash.SerializeToString().decode("utf-8", "replace")
    assert "\x1b" not in serialized and "javascript:" not in serialized


async def test_every_loop_runs_under_the_supervisor(
    ci: Any, stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Zuul poller and each watch's loop are supervised tasks: a crash (injected here,
    since the parsers no longer crash) is logged, counted and the loop comes back."""
    from prometheus_client import REGISTRY

    from hearth_ci import engine as engine_module

    watch = ci_pb2.Watch(filter=FLT)
    await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="mine", watch=watch))
    req = ci_pb2.GetDashboardRequest(watch="watches/mine")
    await dashboard_when(stub, req, "fresh data", _fresh)
    stream = stub.WatchDashboard(ci_pb2.WatchDashboardRequest(filter=FLT))
    await stream.read()
    for family in ("ci-zuul-poll", "ci-watch", "ci-inline-watch"):
        assert REGISTRY.get_sample_value("hearth_task_failing", {"task": family}) == 0.0
    before = REGISTRY.get_sample_value("hearth_task_restarts_total", {"task": "ci-watch"}) or 0
    real = engine_module.build_dashboard
    crashes = 0

    def crashing(*args: Any, **kwargs: Any) -> Any:
        nonlocal crashes
        if kwargs.get("watch") == "watches/mine" and crashes < 2:
            crashes += 1
            raise RuntimeError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "build_dashboard", crashing)
    first = (await stub.GetDashboard(req)).time.ToMilliseconds()

    def restarted(dash: ci_pb2.Dashboard) -> bool:
        return crashes == 2 and dash.time.ToMilliseconds() > first

    await dashboard_when(stub, req, "the watch loop back after two crashes", restarted)
    after = REGISTRY.get_sample_value("hearth_task_restarts_total", {"task": "ci-watch"})
    assert after == before + 2
    stream.cancel()


async def test_an_oversized_answer_is_refused_and_the_last_good_data_stays(
    replay: ReplayServer, tmp_path: Path
) -> None:
    from hearth_ci.main import SPEC
    from hearth_ci.testkit import replay_config
    from hearth_runtime import start_service

    await control(replay.url, document="v2-status-basic.json")
    # 64 KiB: the basic document fits, the gate tree (about 110 KB) does not.
    config = replay_config(replay.url, tmp_path / "state", max_response_mib=1 / 16)
    runtime = await start_service(SPEC, config)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as chan:
            stub = ci_pb2_grpc.CiServiceStub(chan)
            req = ci_pb2.GetDashboardRequest(filter=ci_pb2.Filter(user="danms"))
            good = await dashboard_when(
                stub, req, "the basic document", lambda d: d.zuul.message != ""
            )
            await control(replay.url, document="v2-status-tree.json")
            bad = await dashboard_when(
                stub, req, "the large one refused", lambda d: not _source(d, "zuul").ok
            )
            assert "Zuul answer too large" in _source(bad, "zuul").error
            assert bad.zuul.message == good.zuul.message  # the last good data stays
            await control(replay.url, document="v2-status-basic.json")
            await dashboard_when(stub, req, "recovered", lambda d: _source(d, "zuul").ok)
    finally:
        await runtime.stop(grace=0)
