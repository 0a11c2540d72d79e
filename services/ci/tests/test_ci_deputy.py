# ruff: noqa: F811  (fixtures come from hearth_ci.testkit; tests take them as arguments)
"""Issue 11, the confused deputy: readers cannot make hearth-ci spend its upstream
credentials at will (inline Gerrit queries are shared, cached and capped), never see the
credentials (URLs redacted everywhere), and Basic auth never goes over plain http unless
the operator says so. Plus the silent death, on a real hearth-ci process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci.config import CiConfig
from hearth_ci.dashboard import UPSTREAMS
from hearth_ci.main import SPEC
from hearth_ci.replay import ReplayServer, control, control_sync
from hearth_ci.testkit import (  # noqa: F401  # fixtures
    fixtures_dir,
    replay,
    replay_config,
    replay_url,
)
from hearth_runtime import Runtime, start_service
from hearth_testing import ServiceProcess, metric_value, scrape, wait_for

FLT = ci_pb2.Filter(user="danms", projects=["openstack/nova"])


def _filter(i: int) -> ci_pb2.Filter:
    return ci_pb2.Filter(user="danms", topic=f"topic-{i}")


@pytest.fixture
async def slow_ci(replay: ReplayServer, tmp_path: Path) -> AsyncIterator[Runtime[CiConfig]]:
    """A ci service whose refresh interval outlasts the test: every Gerrit query counts."""
    config = replay_config(
        replay.url,
        tmp_path / "state",
        default_refresh_seconds=60.0,
        max_inline_queries=3,
        max_inline_queries_per_caller=2,
    )
    runtime = await start_service(SPEC, config)
    yield runtime
    await runtime.stop(grace=0)


@pytest.fixture
async def stub(slow_ci: Runtime[CiConfig]) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{slow_ci.grpc_port}") as chan:
        yield ci_pb2_grpc.CiServiceStub(chan)


def _as(principal: str) -> tuple[tuple[str, str], ...]:
    return (("x-hearth-principal", principal),)


async def _gerrit_requests(url: str) -> int:
    return int((await control(url))["counters"].get("gerrit", 0))


async def test_concurrent_inline_dashboards_share_one_gerrit_query(
    stub: Any, replay: ReplayServer
) -> None:
    before = await _gerrit_requests(replay.url)
    request = ci_pb2.GetDashboardRequest(filter=FLT)
    calls = [stub.GetDashboard(request, metadata=_as(f"viewer-{i}")) for i in range(8)]
    streams = [
        stub.WatchDashboard(ci_pb2.WatchDashboardRequest(filter=FLT), metadata=_as(f"s-{i}"))
        for i in range(4)
    ]
    dashboards = await asyncio.gather(*calls, *(s.read() for s in streams))
    for stream in streams:
        stream.cancel()
    matching = {d.matching_items for d in dashboards[:8]}
    matching |= {e.dashboard.matching_items for e in dashboards[8:]}
    assert len(matching) == 1 and matching.pop() > 0  # everyone got the same answer
    again = await stub.GetDashboard(request)  # within the interval: from the cache
    assert again.matching_items > 0
    assert await _gerrit_requests(replay.url) - before == 1  # 13 readers, one query


async def test_inline_queries_are_capped_per_caller_and_in_total(
    stub: Any, replay: ReplayServer
) -> None:
    def request(i: int) -> ci_pb2.GetDashboardRequest:
        return ci_pb2.GetDashboardRequest(filter=_filter(i))

    await stub.GetDashboard(request(1), metadata=_as("alice"))
    await stub.GetDashboard(request(2), metadata=_as("alice"))
    before = await _gerrit_requests(replay.url)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetDashboard(request(3), metadata=_as("alice"))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_inline_queries_per_caller" in (err.value.details() or "")
    stream = stub.WatchDashboard(
        ci_pb2.WatchDashboardRequest(filter=_filter(3)), metadata=_as("alice")
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stream.read()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A query someone already runs is shared: free for anyone, no new upstream request.
    shared = await stub.GetDashboard(request(1), metadata=_as("bob"))
    assert shared.filter_description == "topic:topic-1"
    await stub.GetDashboard(request(4), metadata=_as("bob"))  # the third distinct query
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetDashboard(request(5), metadata=_as("carol"))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "(setting max_inline_queries)" in (err.value.details() or "")
    assert await _gerrit_requests(replay.url) - before == 1  # only bob's new query ran
    # Stored watches are the way to more queries: they are not capped by this.
    watch = ci_pb2.Watch(filter=_filter(6))
    await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="six", watch=watch))
    dash = await stub.GetDashboard(ci_pb2.GetDashboardRequest(watch="watches/six"))
    assert dash.watch == "watches/six"


# ------------------------------------------------------------------ real processes


def _env(tmp_path: Path, zuul: str, gerrit: str, **extra: str) -> dict[str, str]:
    return {
        "HEARTH_CI_GRPC_LISTEN": "127.0.0.1:0",
        "HEARTH_CI_METRICS_LISTEN": "127.0.0.1:0",
        "HEARTH_CI_STATE_DIR": str(tmp_path / "state"),
        "HEARTH_CI_ZUUL_URL": zuul,
        "HEARTH_CI_ZUUL_TENANT": "openstack",
        "HEARTH_CI_GERRIT_URL": gerrit,
        "HEARTH_CI_IDLE_POLL_SECONDS": "0.2",
        "HEARTH_CI_DEFAULT_REFRESH_SECONDS": "0.3",
        "HEARTH_CI_MIN_REFRESH_SECONDS": "0.1",
        "HEARTH_CI_BACKOFF_BASE_SECONDS": "0.1",
        "HEARTH_CI_BACKOFF_MAX_SECONDS": "0.3",
        "HEARTH_CI_HTTP_TIMEOUT_SECONDS": "1",
        "HEARTH_CI_SHUTDOWN_GRACE_SECONDS": "1",
        **extra,
    }


def _source(dash: ci_pb2.Dashboard, name: str) -> ci_pb2.SourceHealth:
    return next(s for s in dash.sources if s.source == UPSTREAMS[name])


def _matching(address: str, fresh: bool = False) -> ci_pb2.Dashboard | None:
    dash = _dashboard(address)
    return dash if dash.matching_items and not (fresh and dash.stale) else None


def _all_failing(address: str) -> ci_pb2.Dashboard | None:
    dash = _dashboard(address)
    return dash if all(not s.ok for s in dash.sources) else None


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as chan:
        reply = health_pb2_grpc.HealthStub(chan).Check(
            health_pb2.HealthCheckRequest(service="hearth.ci.v1.CiService"), timeout=5
        )
    return int(reply.status)


def _dashboard(address: str) -> ci_pb2.Dashboard:
    with grpc.insecure_channel(address) as chan:
        reply: ci_pb2.Dashboard = ci_pb2_grpc.CiServiceStub(chan).GetDashboard(
            ci_pb2.GetDashboardRequest(filter=FLT), timeout=10
        )
    return reply


def test_basic_auth_over_plain_http_is_refused_at_start(replay_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path, replay_url, replay_url)
    env |= {"HEARTH_CI_GERRIT_USER": "danms", "HEARTH_CI_GERRIT_PASSWORD": "secret"}
    proc = ServiceProcess("ci", env=env)
    with pytest.raises(RuntimeError) as err:
        proc.start()
    assert proc.proc is not None and proc.proc.returncode == 2
    assert "gerrit_url" in str(err.value) and "HEARTH_CI_ALLOW_INSECURE_AUTH" in str(err.value)
    assert "secret" not in str(err.value)
    creds = replay_url.replace("http://", "http://zuser:zpass@")
    proc = ServiceProcess("ci", env=_env(tmp_path, creds, replay_url))
    with pytest.raises(RuntimeError) as err:
        proc.start()
    assert proc.proc is not None and proc.proc.returncode == 2
    assert "zuul_url" in str(err.value) and "zpass" not in str(err.value)
    env["HEARTH_CI_ALLOW_INSECURE_AUTH"] = "true"  # the operator's explicit choice
    with ServiceProcess("ci", env=env) as service:
        assert _health(service.grpc_address) == health_pb2.HealthCheckResponse.SERVING


def test_url_credentials_never_reach_readers_or_logs(replay_url: str, tmp_path: Path) -> None:
    zuul = replay_url.replace("http://", "http://zuser:zpass@")
    gerrit = replay_url.replace("http://", "http://guser:gpass@")
    env = _env(tmp_path, zuul, gerrit, HEARTH_CI_ALLOW_INSECURE_AUTH="true")
    control_sync(replay_url, zuul_fault="", gerrit_fault="")
    with ServiceProcess("ci", env=env) as service:
        dash = wait_for("a dashboard", lambda: _matching(service.grpc_address))
        assert (
            dash is not None
            and dash.zuul.url.startswith("http://***@")
            and "zuser" not in dash.zuul.url
        )
        control_sync(replay_url, zuul_fault="500", gerrit_fault="500")
        try:
            bad = wait_for("both failing", lambda: _all_failing(service.grpc_address))
            assert bad is not None
        finally:
            control_sync(replay_url, zuul_fault="", gerrit_fault="")
        seen = bad.SerializeToString().decode("utf-8", "replace") + service.output
        for secret in ("zpass", "gpass", "zuser:", "guser:"):
            assert secret not in seen


def test_a_real_process_survives_malformed_zuul_documents(replay_url: str, tmp_path: Path) -> None:
    env = _env(tmp_path, replay_url, replay_url)
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    with ServiceProcess("ci", env=env) as service:
        good = wait_for("fresh data", lambda: _matching(service.grpc_address))
        try:
            control_sync(replay_url, zuul_raw='{"pipelines": [null]}')
            wait_for(
                "the skipped pipeline shown",
                lambda: _source(_dashboard(service.grpc_address), "zuul").warning,
            )
            control_sync(replay_url, zuul_raw='{"pipelines": [], "message": Infinity}')
            wait_for("NOT_SERVING", lambda: _health(service.grpc_address) == not_serving)
            polls = control_sync(replay_url)["counters"]["zuul"]
            wait_for("more polls", lambda: control_sync(replay_url)["counters"]["zuul"] > polls + 5)
            # Logged once per change of error, not once per poll.
            assert len([x for x in service.lines if "Zuul poll failed" in x]) == 1
            assert len([x for x in service.lines if "had malformed parts" in x]) == 1
            samples = scrape(service.metrics_address)
            for reason in ("non_finite", "pipeline"):
                assert metric_value(
                    samples, "hearth_ci_upstream_rejected_total", source="zuul", reason=reason
                )
        finally:
            control_sync(replay_url, zuul_raw=None, touch=True)
        wait_for("SERVING again", lambda: _health(service.grpc_address) == serving)
        again = wait_for(
            "fresh data again",
            lambda: _matching(service.grpc_address, fresh=True),
        )
        assert again is not None and good is not None
        assert again.matching_items == good.matching_items
