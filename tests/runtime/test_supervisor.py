"""The runtime's supervisor: crashes are logged, counted, restarted with backoff and
reflected in health; a task that runs stably again makes the service SERVING again."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hearth_runtime import Runtime, ServiceConfig, ServiceSpec, start_service
from hearth_runtime.supervisor import FAILING, RESTARTS, Supervisor
from hearth_testing import wait_for_async

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _until(what: str, check: Callable[[], object]) -> None:
    async def poll() -> object:
        return check()

    await wait_for_async(what, poll, within=5)


def _restarts(family: str) -> float:
    return RESTARTS.labels(family)._value.get()


async def test_a_crashing_task_is_logged_counted_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor(first_backoff=0.01, max_backoff=0.02)
    runs = 0
    before = _restarts("flaky")

    async def flaky() -> str:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ValueError(f"bad document {runs}")
        return "done"

    with caplog.at_level(logging.ERROR, logger="hearth.supervisor"):
        task = supervisor.spawn(flaky, "flaky-1", family="flaky")
        assert await asyncio.wait_for(task, 5) == "done"
    assert runs == 3
    assert _restarts("flaky") - before == 2
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 2
    assert crashes[0].exc_info is not None and "bad document 1" in str(crashes[0].exc_info[1])
    assert supervisor.failing() == {}
    await supervisor.close()


async def test_backoff_doubles_up_to_its_cap(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(first_backoff=0.01, max_backoff=0.04, failing_after=99)
    runs = 0

    async def always() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("no")

    with caplog.at_level(logging.ERROR, logger="hearth.supervisor"):
        supervisor.spawn(always, "always")
        await _until("six runs", lambda: runs >= 6)
        await supervisor.close()
    waits = [r.kv["retry_in"] for r in caplog.records if hasattr(r, "kv")][:5]
    assert waits == ["0.01s", "0.02s", "0.04s", "0.04s", "0.04s"]


async def test_restart_false_runs_once() -> None:
    supervisor = Supervisor(first_backoff=0.01)
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("one shot")

    task = supervisor.spawn(once, "once", restart=False)
    assert await asyncio.wait_for(task, 5) is None
    await asyncio.sleep(0.05)
    assert runs == 1


async def test_a_thread_is_restarted_and_stops_on_cancel() -> None:
    supervisor = Supervisor(first_backoff=0.01)
    runs = 0
    stopped = threading.Event()

    def target(stop: threading.Event) -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise OSError("interface went away")
        stop.wait()
        stopped.set()

    supervisor.spawn_thread(target, "sniff-x", family="sniff")
    await _until("three runs", lambda: runs == 3)
    supervisor.cancel("sniff-x")
    await _until("the thread to stop", stopped.is_set)
    assert runs == 3


async def _is(status: Callable[[], Awaitable[int]], want: int) -> bool:
    return await status() == want


async def _setup(runtime: Runtime[ServiceConfig]) -> None:
    async def poller() -> None:
        while True:
            if runtime.config.log_level == "ERROR":  # the test's switch: "upstream is bad"
                raise ValueError("malformed upstream document")
            await asyncio.sleep(0.01)

    runtime.supervisor.first_backoff = 0.01
    runtime.supervisor.max_backoff = 0.02
    runtime.supervisor.stable_after = 0.3
    runtime.spawn(poller, "poller")


@pytest.fixture
async def served() -> AsyncIterator[tuple[Runtime[ServiceConfig], grpc.aio.Channel]]:
    config = ServiceConfig(grpc_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    runtime = await start_service(ServiceSpec("supervised", ServiceConfig, _setup), config)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield runtime, channel
    await runtime.stop(grace=0)


async def test_health_says_not_serving_while_a_task_keeps_failing_and_recovers(
    served: tuple[Runtime[ServiceConfig], grpc.aio.Channel],
) -> None:
    runtime, channel = served
    health = health_pb2_grpc.HealthStub(channel)

    async def status() -> int:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        return int(reply.status)

    assert await status() == SERVING
    runtime.config.log_level = "ERROR"  # every run of the poller now crashes at once
    await _until("a failing task", lambda: bool(runtime.supervisor.failing()))
    assert "malformed upstream document" in runtime.supervisor.failing()["poller"]
    assert FAILING.labels("poller")._value.get() == 1
    await wait_for_async("NOT_SERVING", lambda: _is(status, NOT_SERVING), within=5)

    # The service's own word cannot override a failing task.
    await runtime.set_serving(True)
    assert await status() == NOT_SERVING

    runtime.config.log_level = "INFO"  # upstream fixed: the poller now runs stably
    await _until("no failing task", lambda: not runtime.supervisor.failing())
    await wait_for_async("SERVING", lambda: _is(status, SERVING), within=5)
    assert FAILING.labels("poller")._value.get() == 0
