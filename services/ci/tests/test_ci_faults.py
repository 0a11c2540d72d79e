# ruff: noqa: F811  (fixtures come from hearth_ci.testkit; tests take them as arguments)
"""Zuul and Gerrit failing in every recorded way: clear errors per source, last good data
kept and marked stale, health degraded, recovery when the server returns."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hearth.ci.v1 import ci_pb2
from hearth_ci.dashboard import UPSTREAMS
from hearth_ci.replay import ReplayServer, control
from hearth_ci.testkit import channel, ci, dashboard_when, fixtures_dir, replay, stub  # noqa: F401  # fixtures

FLT = ci_pb2.Filter(user="danms", projects=["openstack/nova"])
INLINE = ci_pb2.GetDashboardRequest(filter=FLT)


def _source(dash: ci_pb2.Dashboard, name: str) -> ci_pb2.SourceHealth:
    return next(s for s in dash.sources if s.source == UPSTREAMS[name])


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="hearth.ci.v1.CiService"))
    return int(reply.status)


async def _good(stub: Any) -> ci_pb2.Dashboard:
    return await dashboard_when(
        stub,
        INLINE,
        "fresh matches from both sources",
        lambda d: d.matching_items > 0 and not d.stale and all(s.ok for s in d.sources),
    )


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("500", "Zuul answered HTTP 500"),
        ("timeout", "Zuul did not answer within 1 s"),
        ("truncated", "Zuul sent invalid JSON"),
    ],
)
async def test_zuul_faults_keep_last_good_data_and_recover(
    stub: Any, channel: grpc.aio.Channel, replay: ReplayServer, fault: str, error: str
) -> None:
    good = await _good(stub)
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    await control(replay.url, zuul_fault=fault, fault_delay=3)
    bad = await dashboard_when(stub, INLINE, "Zuul failing", lambda d: not _source(d, "zuul").ok)
    zuul = _source(bad, "zuul")
    assert error in zuul.error and zuul.failed_attempts >= 1 and zuul.stale and bad.stale
    assert _source(bad, "gerrit").ok and not _source(bad, "gerrit").error  # reported apart
    assert bad.matching_items == good.matching_items  # the last good data is still served
    assert zuul.last_success.ToMilliseconds() > 0
    assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    await control(replay.url, zuul_fault="")
    await _good(stub)
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("noguard", "lacks the )]}' guard"),
        ("401", "Gerrit refused the credentials (HTTP 401)"),
        ("500", "Gerrit answered HTTP 500"),
    ],
)
async def test_gerrit_faults_are_reported_apart_and_recover(
    stub: Any, channel: grpc.aio.Channel, replay: ReplayServer, fault: str, error: str
) -> None:
    good = await _good(stub)
    await control(replay.url, gerrit_fault=fault)
    bad = await dashboard_when(
        stub, INLINE, "Gerrit failing", lambda d: not _source(d, "gerrit").ok
    )
    gerrit = _source(bad, "gerrit")
    assert error in gerrit.error and gerrit.stale and bad.stale
    assert _source(bad, "zuul").ok
    # Zuul alone still tells the changes in the project; subjects need Gerrit.
    assert bad.matching_items > 0
    assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
    await control(replay.url, gerrit_fault="")
    again = await _good(stub)
    assert again.matching_items == good.matching_items


async def test_a_watch_keeps_its_gerrit_matches_while_gerrit_fails(
    stub: Any, replay: ReplayServer
) -> None:
    watch = ci_pb2.Watch(filter=ci_pb2.Filter(user="danms", starred=True))
    await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="stars", watch=watch))
    req = ci_pb2.GetDashboardRequest(watch="watches/stars")
    good = await dashboard_when(stub, req, "starred matches", lambda d: d.matching_items > 0)
    await control(replay.url, gerrit_fault="401")
    bad = await dashboard_when(stub, req, "Gerrit failing", lambda d: not _source(d, "gerrit").ok)
    assert bad.matching_items == good.matching_items and bad.stale
    await control(replay.url, gerrit_fault="")
    await dashboard_when(stub, req, "fresh data again", lambda d: not d.stale)
