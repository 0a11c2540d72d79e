"""The ci tests' pytest fixtures: the replay server (in-process and as a process), a ci
service polling it, and a channel and stub to that service. Helpers that are not fixtures
are in :mod:`hearth_ci_lab.harness`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from hearth.ci.v1 import ci_pb2_grpc
from hearth_ci.config import CiConfig
from hearth_ci.main import SPEC
from hearth_ci_lab.harness import replay_config
from hearth_ci_lab.replay import ReplayServer, ReplayState, default_fixtures, wait_until_up
from hearth_runtime import Runtime, start_service
from hearth_testing import free_port


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
        [sys.executable, "-m", "hearth_ci_lab.replay", "--fixtures", str(default_fixtures()),
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
