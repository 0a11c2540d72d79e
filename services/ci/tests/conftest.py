"""Fixtures for the ci tests: the replay server (a real HTTP server on loopback serving the
recorded Zuul documents and Gerrit answers) and the ci service in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from hearth.ci.v1 import ci_pb2_grpc
from hearth_ci.config import CiConfig
from hearth_ci.main import SPEC
from hearth_ci.replay import ReplayServer, ReplayState, default_fixtures
from hearth_ci.testkit import replay_config
from hearth_lab.pytest_plugin import lab  # noqa: F401  # the lab fixture, for test_demo
from hearth_runtime import Runtime, start_service


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
