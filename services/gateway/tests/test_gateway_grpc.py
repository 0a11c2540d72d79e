"""The gRPC face: forwarding, auth, status, health, reflection, a backend going away."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_harness import (  # type: ignore[import-not-found]
    OPERATOR,
    VIEWER,
    MakeGateway,
    Running,
    auth,
    create_host,
    open_grpc_watches,
)
from google.protobuf import descriptor_pool
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth.auth.v1 import policy_pb2
from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_testing import wait_for_async


@pytest.fixture(params=["edge", "python"])
def front(request: pytest.FixtureRequest) -> str:
    """Every gRPC-face test runs against both front doors: the edge and grpc-python."""
    return str(request.param)


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(exc)
    assert status is not None, "no rich status"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


async def test_every_service_is_forwarded_unary_and_streaming(gw: Running) -> None:
    host = await create_host(gw)
    assert host.name == "hosts/devbox"
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    listed = await wake.ListHosts(wake_pb2.ListHostsRequest(), metadata=auth(VIEWER))
    assert [h.name for h in listed.hosts] == ["hosts/devbox"]
    audio = audio_pb2_grpc.AudioServiceStub(gw.channel)
    zones = await audio.ListZones(audio_pb2.ListZonesRequest(), metadata=auth(VIEWER))
    assert zones.zones[0].name == "zones/kitchen"
    ci = ci_pb2_grpc.CiServiceStub(gw.channel)
    pipelines = await ci.ListPipelines(ci_pb2.ListPipelinesRequest(), metadata=auth(VIEWER))
    assert pipelines.zuul.message == "Zuul is being upgraded"

    stream = wake.WatchHostEvents(wake_pb2.WatchHostEventsRequest(), metadata=auth(VIEWER))
    first = await stream.read()
    assert first.kind == wake_pb2.HostEvent.KIND_CURRENT and first.host.name == "hosts/devbox"
    await wake.WakeHost(wake_pb2.WakeHostRequest(name="hosts/devbox"), metadata=auth(OPERATOR))
    event = await asyncio.wait_for(stream.read(), 5)
    assert (
        event.kind == wake_pb2.HostEvent.KIND_ALIVE
        and event.host.state == wake_pb2.HOST_STATE_AWAKE
    )
    stream.cancel()


async def test_backend_errors_come_back_unchanged(gw: Running) -> None:
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wake.GetHost(wake_pb2.GetHostRequest(name="hosts/nope"), metadata=auth(VIEWER))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "hosts/nope" in (caught.value.details() or "")
    assert error_info(caught.value).domain == "wake.hearth"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wake.CreateHost(wake_pb2.CreateHostRequest(), metadata=auth(OPERATOR))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "host_id" in (caught.value.details() or "")


async def test_metadata_and_deadline_reach_the_backend(gw: Running) -> None:
    await create_host(gw)
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    call = wake.GetHost(
        wake_pb2.GetHostRequest(name="hosts/devbox"),
        metadata=(*auth(VIEWER), ("x-request-id", "abc-123")),
        timeout=7,
    )
    await call
    seen = gw.backends.wake.metadata_seen[-1]
    assert seen["x-request-id"] == "abc-123"
    assert seen["x-hearth-principal"] == "victor"
    assert "authorization" not in seen  # the token is the gateway's, never the backend's
    remaining = gw.backends.wake.deadlines_seen[-1]
    assert remaining is not None and 5 < remaining <= 7.1  # gRPC rounds timeouts up
    trailers = dict(await call.trailing_metadata() or ())
    assert trailers.get("hearth-service") == "wake"
    headers = dict(await call.initial_metadata() or ())
    assert headers.get("x-served-by") == "fake-wake"


async def test_cancellation_and_deadline_expiry_reach_the_backend(gw: Running) -> None:
    await create_host(gw)
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    call = wake.WaitUntilAwake(
        wake_pb2.WaitUntilAwakeRequest(name="hosts/devbox"), metadata=auth(OPERATOR)
    )
    await asyncio.wait_for(gw.backends.wake.waiting.wait(), 10)  # the call reached the backend
    call.cancel()
    await asyncio.wait_for(gw.backends.wake.cancelled.wait(), 5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wake.WaitUntilAwake(
            wake_pb2.WaitUntilAwakeRequest(name="hosts/devbox"),
            metadata=auth(OPERATOR),
            timeout=0.3,
        )
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def audit_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    """The audit records once ``count`` are there (the edge reports a call after its reply)."""

    async def enough() -> list[logging.LogRecord] | None:
        lines = [r for r in caplog.records if r.name == "hearth.audit"]
        return lines if len(lines) >= count else None

    lines = await wait_for_async(f"{count} audit line(s)", enough, within=5)
    assert lines is not None
    await asyncio.sleep(0.2)  # and no more than that
    assert len([r for r in caplog.records if r.name == "hearth.audit"]) == count
    return lines


async def test_auth_codes_and_audit_line(gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    request = wake_pb2.ListHostsRequest()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wake.ListHosts(request)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wake.ListHosts(request, metadata=auth("wrong-token"))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wake.ListHosts(request, metadata=(("authorization", "Basic abc"),))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wake.WakeHost(wake_pb2.WakeHostRequest(name="hosts/x"), metadata=auth(VIEWER))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "operator" in (caught.value.details() or "")
    assert error_info(caught.value).reason == "ROLE_REQUIRED"
    assert gw.backends.wake.hosts == {}  # nothing reached the backend
    refused = await audit_lines(caplog, 1)
    assert [r.getMessage() for r in refused] == ["audit refused"]
    assert refused[0].kv["code"] == "PERMISSION_DENIED"  # type: ignore[attr-defined]
    caplog.clear()

    with caplog.at_level(logging.INFO, logger="hearth.audit"):
        await create_host(gw, "nas")
        lines = await audit_lines(caplog, 1)
    fields = lines[0].kv  # type: ignore[attr-defined]
    assert fields["who"] == "olivia" and fields["role"] == "operator"
    assert fields["method"] == "hearth.wake.v1.WakeService/CreateHost"
    assert fields["resource"] == "nas" and fields["code"] == "OK"


async def test_anonymous_read_when_the_owner_allows_it(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(anonymous_read=True)
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    assert (await wake.ListHosts(wake_pb2.ListHostsRequest())).hosts == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wake.DeleteHost(wake_pb2.DeleteHostRequest(name="hosts/x"))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    status = await gateway_pb2_grpc.GatewayServiceStub(gw.channel).GetSystemStatus(
        gateway_pb2.GetSystemStatusRequest()
    )
    assert status.role == policy_pb2.ROLE_ANONYMOUS


async def test_wake_requests_are_rate_limited(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(rate_limits={"hearth.wake.v1.WakeService/WakeHost": "3/min"})
    await create_host(gw)
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    request = wake_pb2.WakeHostRequest(name="hosts/devbox")
    for _ in range(3):
        await wake.WakeHost(request, metadata=auth(OPERATOR))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await wake.WakeHost(request, metadata=auth(OPERATOR))
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(caught.value).reason == "RATE_LIMITED"


async def test_system_status_reports_each_backend(gw: Running) -> None:
    status = await gateway_pb2_grpc.GatewayServiceStub(gw.channel).GetSystemStatus(
        gateway_pb2.GetSystemStatusRequest(), metadata=auth(VIEWER)
    )
    assert status.role == policy_pb2.ROLE_VIEWER
    by_name = {b.name: b for b in status.backends}
    assert set(by_name) == {"wake", "audio", "ci"}
    for name, backend in by_name.items():
        assert backend.up and backend.health == gateway_pb2.HEALTH_STATUS_SERVING, backend
        assert backend.version == "9.9.9"
        assert backend.address == gw.backends.address(name)
        assert backend.round_trip.ToNanoseconds() > 0
    assert "hearth.audio.v1.AudioService" in by_name["audio"].services


def reflect(address: str) -> tuple[set[str], list[str], list[str]]:
    """What a reflection client (like grpcurl) sees: services, WakeHost's methods, fields."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        wake = pool.FindServiceByName("hearth.wake.v1.WakeService")
        dashboard = pool.FindMessageTypeByName("hearth.ci.v1.Dashboard")
        return services, [m.name for m in wake.methods], list(dashboard.fields_by_name)


async def test_reflection_lists_and_describes_every_service(gw: Running) -> None:
    # A blocking client in a thread: the gateway serves from this test's event loop.
    services, methods, fields = await asyncio.to_thread(reflect, gw.grpc_address)
    assert {
        "hearth.wake.v1.WakeService",
        "hearth.audio.v1.AudioService",
        "hearth.ci.v1.CiService",
        "hearth.gateway.v1.GatewayService",
        "grpc.health.v1.Health",
    } <= services
    assert "WakeHost" in methods
    assert "zuul" in fields


async def grpcurl(*args: str) -> str:
    """Run the real grpcurl (installed with the dev tools); its stdout."""
    binary = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
    process = await asyncio.create_subprocess_exec(
        binary, "-plaintext", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"grpcurl {' '.join(args)}: {err.decode()}"
    return out.decode()


async def test_grpcurl_lists_describes_and_calls_through_the_gateway(gw: Running) -> None:
    await create_host(gw)
    listed = set((await grpcurl(gw.grpc_address, "list")).split())
    assert set(gw.runtime.service_names) <= listed
    assert {"hearth.wake.v1.WakeService", "hearth.gateway.v1.GatewayService"} <= listed
    described = await grpcurl(gw.grpc_address, "describe", "hearth.wake.v1.WakeService")
    assert "rpc WakeHost ( .hearth.wake.v1.WakeHostRequest )" in described
    answer = await grpcurl(
        "-H",
        f"authorization: Bearer {VIEWER}",
        "-d",
        '{"name": "hosts/devbox"}',
        gw.grpc_address,
        "hearth.wake.v1.WakeService/GetHost",
    )
    assert json.loads(answer)["mac"] == "02:00:00:00:00:01"


async def test_a_stopped_backend_fails_fast_and_recovers(gw: Running) -> None:
    health = health_pb2_grpc.HealthStub(gw.channel)
    gateway = gateway_pb2_grpc.GatewayServiceStub(gw.channel)
    ci = ci_pb2_grpc.CiServiceStub(gw.channel)
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    port = gw.backends.runtimes["ci"].grpc_port
    await gw.backends.stop("ci")

    # Failing fast: UNAVAILABLE well inside the deadline, not DEADLINE_EXCEEDED at its end.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ci.ListPipelines(ci_pb2.ListPipelinesRequest(), metadata=auth(VIEWER), timeout=3)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "backend ci" in (caught.value.details() or "")
    assert error_info(caught.value).metadata["backend"] == "ci"
    # The others keep working.
    await wake.ListHosts(wake_pb2.ListHostsRequest(), metadata=auth(VIEWER))

    async def ci_is(up: bool) -> bool:
        status = await gateway.GetSystemStatus(
            gateway_pb2.GetSystemStatusRequest(), metadata=auth(VIEWER)
        )
        return {b.name: b.up for b in status.backends}["ci"] is up

    await wait_for_async("ci down in the system status", lambda: ci_is(False))
    check = await health.Check(health_pb2.HealthCheckRequest(service="hearth.ci.v1.CiService"))
    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
    overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert overall.status == health_pb2.HealthCheckResponse.NOT_SERVING

    await gw.backends.start("ci", port=port)
    await wait_for_async("ci up again in the system status", lambda: ci_is(True))
    answer = await ci.ListPipelines(ci_pb2.ListPipelinesRequest(), metadata=auth(VIEWER))
    assert answer.pipelines[0].name == "gate"
    check = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert check.status == health_pb2.HealthCheckResponse.SERVING


async def test_watch_system_status_sends_current_state_first(gw: Running) -> None:
    stream = gateway_pb2_grpc.GatewayServiceStub(gw.channel).WatchSystemStatus(
        gateway_pb2.WatchSystemStatusRequest(), metadata=auth(VIEWER)
    )
    first = await asyncio.wait_for(stream.read(), 5)
    assert len(first.backends) == 3
    second = await asyncio.wait_for(stream.read(), 5)  # after the next check round
    assert second.time.ToNanoseconds() > first.time.ToNanoseconds()
    stream.cancel()


async def test_a_cancelled_watch_cancels_the_backend_stream(gw: Running) -> None:
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    before = open_grpc_watches()  # the registry is this process's: other tests' streams count
    stream = wake.WatchHostEvents(wake_pb2.WatchHostEventsRequest(), metadata=auth(VIEWER))
    await wait_for_async("the backend stream", lambda: _subscribers(gw, 1))

    async def gauge_up() -> bool:
        return open_grpc_watches() == before + 1

    await wait_for_async("the active-streams gauge up", gauge_up, within=5)
    stream.cancel()
    await wait_for_async("the backend stream to end", lambda: _subscribers(gw, 0))

    async def gauge_back() -> bool:
        return open_grpc_watches() == before

    await wait_for_async("the active-streams gauge back down", gauge_back, within=5)


async def _subscribers(gw: Running, count: int) -> bool:
    return bool(gw.backends.wake.events.subscribers == count)


async def test_200_concurrent_watches_each_receive_every_event(gw: Running) -> None:
    await create_host(gw)
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    events = 10
    streams = [
        wake.WatchHostEvents(wake_pb2.WatchHostEventsRequest(), metadata=auth(VIEWER))
        for _ in range(200)
    ]
    for stream in streams:  # the current state first
        assert (await asyncio.wait_for(stream.read(), 20)).kind == wake_pb2.HostEvent.KIND_CURRENT
    for i in range(events):
        host = wake_pb2.Host(name="hosts/devbox", ipv4=f"198.18.0.{i}")
        gw.backends.wake.events.publish(
            wake_pb2.HostEvent(kind=wake_pb2.HostEvent.KIND_ALIVE, host=host)
        )

    async def receive(stream: Any) -> list[str]:
        return [(await stream.read()).host.ipv4 for _ in range(events)]

    received = await asyncio.wait_for(asyncio.gather(*(receive(s) for s in streams)), 60)
    expected = [f"198.18.0.{i}" for i in range(events)]
    assert all(got == expected for got in received)
    for stream in streams:
        stream.cancel()
