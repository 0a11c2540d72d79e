"""What the ci tests and benchmarks share besides fixtures: a ci service configured against
a replay server, and ways to wait for a dashboard or a run of stream events. The pytest
fixtures live in ``services/ci/tests/conftest.py``; waiting is
:func:`hearth_testing.wait_for_async`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearth.ci.v1 import ci_pb2
from hearth_ci.config import CiConfig
from hearth_testing import wait_for_async


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
