"""Helpers the ci tests and benchmark share: configure a service against a replay server,
and the pytest fixtures of the ci tests (test modules import the ones they use). The replay
server's control clients live in :mod:`hearth_ci.replay`; waiting is
:func:`hearth_testing.wait_for_async`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci.config import CiConfig
from hearth_ci.main import SPEC
from hearth_ci.replay import ReplayServer, ReplayState, default_fixtures, wait_until_up
from hearth_runtime import Runtime, start_service
from hearth_testing import free_port, wait_for_async


def replay_config(url: str, state_dir: Path, **overrides: Any) -> CiConfig:
    """A ci service polling the replay server at ``url`` quickly (tests, benchmarks)."""
    settings: dict[str, Any] = {
        "grpc_listen": "127.0.0.1:0",
        "metrics_listen": "127.0.0.1:0",
        "state_dir": state_dir,
        "zuul_url": url,
        "zuul_tenant": "openstack",
        "gerrit_url": url,
        "gerrit_user": "danms",
        "gerrit_password": "secret",
        "allow_insecure_auth": True,  # the replay server speaks plain http on loopback
        "http_timeout_seconds": 1.0,
        "default_refresh_seconds": 0.3,
        "min_refresh_seconds": 0.1,
        "idle_poll_seconds": 0.2,
        "backoff_base_seconds": 0.1,
        "backoff_max_seconds": 0.4,
    }
    settings.update(overrides)
    return CiConfig(**settings)


# ---------------------------------------------------------------- pytest fixtures


@pytest.fixture
def fixtures_dir() -> Path:
    path = default_fixtures()
    assert (path / "v2-status-tree.json").is_file(), f"recorded Zuul documents missing in {path}"
    return path


@pytest.fixture(scope="module")
def replay_url() -> Iterator[str]:
    """The replay server as a process of its own, for tests that run hearth-ci as one."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth_ci.replay", "--fixtures", str(default_fixtures()),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def replay(fixtures_dir: Path) -> AsyncIterator[ReplayServer]:
    server = await ReplayServer(ReplayState(fixtures=fixtures_dir)).start()
    yield server
    await server.stop()


@pytest.fixture
async def ci(replay: ReplayServer, tmp_path: Path) -> AsyncIterator[Runtime[CiConfig]]:
    runtime = await start_service(SPEC, replay_config(replay.url, tmp_path / "state"))
    yield runtime
    await runtime.stop(grace=0)


@pytest.fixture
async def channel(ci: Runtime[CiConfig]) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ci.grpc_port}") as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> ci_pb2_grpc.CiServiceStub:
    return ci_pb2_grpc.CiServiceStub(channel)


async def dashboard_when(
    stub: Any,  # a grpc.aio CiServiceStub
    request: ci_pb2.GetDashboardRequest,
    what: str,
    holds: Callable[[ci_pb2.Dashboard], bool],
    within: float = 30.0,
) -> ci_pb2.Dashboard:
    """The first GetDashboard answer for which ``holds`` is true (polled with a deadline)."""

    async def check() -> ci_pb2.Dashboard | None:
        dash: ci_pb2.Dashboard = await stub.GetDashboard(request)
        return dash if holds(dash) else None

    found = await wait_for_async(what, check, within=within)
    assert found is not None
    return found


def kinds_of(events: list[ci_pb2.DashboardEvent]) -> set[tuple[str, str]]:
    """{(kind name, change)} of stream events, for exact comparisons."""
    return {(ci_pb2.DashboardEvent.Kind.Name(e.kind), e.item.change) for e in events}


async def events_until(
    call: Any, kinds: set[int], within: float = 15.0
) -> tuple[list[ci_pb2.DashboardEvent], ci_pb2.DashboardEvent]:
    """Read a WatchDashboard stream up to the first snapshot that follows an event of one
    of ``kinds``: the events (not snapshots) read and that snapshot."""
    seen: list[ci_pb2.DashboardEvent] = []
    try:
        async with asyncio.timeout(within):  # snapshots keep coming: bound the whole read
            while True:
                event: ci_pb2.DashboardEvent = await call.read()
                if event.kind != ci_pb2.DashboardEvent.KIND_SNAPSHOT:
                    seen.append(event)
                elif any(e.kind in kinds for e in seen):
                    return seen, event
    except TimeoutError:
        names = sorted(ci_pb2.DashboardEvent.Kind.Name(k) for k in kinds)  # type: ignore[arg-type]
        raise AssertionError(f"no {names} within {within} s; saw {kinds_of(seen)}") from None
