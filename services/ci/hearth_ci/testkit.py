"""Helpers the ci tests, benchmark and demo share: drive a replay server, wait for a
condition with a deadline (no fixed sleeps), configure a service against a replay server,
and the pytest fixtures of the ci tests (test modules import the ones they use)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import grpc
import pytest

from hearth.ci.v1 import ci_pb2_grpc
from hearth_ci.config import CiConfig
from hearth_ci.main import SPEC
from hearth_ci.replay import ReplayServer, ReplayState, default_fixtures
from hearth_runtime import Runtime, start_service

T = TypeVar("T")


async def control(url: str, **changes: Any) -> dict[str, Any]:
    """Switch a replay server's document, shape or faults (POST /_control); its state."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/_control", json=changes) as resp,
    ):
        if resp.status != 200:
            raise RuntimeError(f"replay control failed: HTTP {resp.status} {await resp.text()}")
        data: dict[str, Any] = await resp.json()
        return data


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], within: float = 10.0
) -> T:
    """Poll ``probe`` until ``check`` holds; AssertionError with the last value otherwise."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s; last value:\n{value}")
        await asyncio.sleep(0.05)


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
