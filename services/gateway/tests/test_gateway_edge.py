"""hearth-edge, the Rust front door: what only it has to show (the gRPC-face tests in
test_gateway_grpc.py run against it and against the Python front door alike)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from pathlib import Path

import aiohttp
import grpc
import pytest
from gateway_doubles import HUGE_ANSWER  # type: ignore[import-not-found]
from gateway_harness import (  # type: ignore[import-not-found]
    OPERATOR,
    VIEWER,
    MakeGateway,
    Running,
    auth,
    create_host,
    open_grpc_watches,
)
from prometheus_client import REGISTRY

from hearth.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_gateway.app import GatewayApp
from hearth_gateway.config import GatewayConfig
from hearth_gateway.main import SPEC
from hearth_runtime import ConfigError, Runtime, start_service
from hearth_testing import wait_for_async


def handled(method: str, code: str) -> float:
    labels = {
        "grpc_type": "unary",
        "grpc_service": "hearth.wake.v1.WakeService",
        "grpc_method": method,
        "grpc_code": code,
    }
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


def edge_pid(gw: Running) -> int:
    edge = gw.gateway.edge
    assert edge is not None and edge.process is not None, "the gateway is not using the edge"
    return int(edge.process.pid)


async def test_calls_served_by_the_edge_are_counted_in_the_gateways_metrics(gw: Running) -> None:
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    ok, refused = handled("ListHosts", "OK"), handled("ListHosts", "UNAUTHENTICATED")
    await wake.ListHosts(wake_pb2.ListHostsRequest(), metadata=auth(VIEWER))
    with pytest.raises(grpc.aio.AioRpcError):
        await wake.ListHosts(wake_pb2.ListHostsRequest())

    # The backend double runs in this process and counts its own call too: 2 = it + the edge.
    async def counted() -> bool:
        return handled("ListHosts", "OK") == ok + 2 and (
            handled("ListHosts", "UNAUTHENTICATED") == refused + 1
        )

    await wait_for_async("both calls in grpc_server_handled_total", counted, within=5)


async def test_the_backend_sees_the_real_caller_not_a_claimed_one(gw: Running) -> None:
    await create_host(gw)
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    claimed = (("x-forwarded-for", "203.0.113.9"), ("x-hearth-principal", "olivia"))
    request = wake_pb2.GetHostRequest(name="hosts/devbox")
    await wake.GetHost(request, metadata=(*auth(VIEWER), *claimed))
    seen = gw.backends.wake.metadata_seen[-1]
    assert seen["x-forwarded-for"].startswith("ipv4:127.0.0.1:")
    assert seen["x-hearth-principal"] == "victor"


async def test_an_unknown_method_is_unimplemented(gw: Running) -> None:
    call = gw.channel.unary_unary("/hearth.nothing.v1.Nothing/Get")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"", metadata=auth(VIEWER))
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_a_killed_edge_is_started_again_on_the_same_port(gw: Running) -> None:
    before = edge_pid(gw)
    port = gw.runtime.grpc_port
    watches = open_grpc_watches()
    stream = wake_pb2_grpc.WakeServiceStub(gw.channel).WatchHostEvents(
        wake_pb2.WatchHostEventsRequest(), metadata=auth(VIEWER)
    )

    async def watching() -> bool:
        return open_grpc_watches() == watches + 1

    await wait_for_async("the watch counted open", watching, within=5)
    os.kill(before, signal.SIGKILL)
    with pytest.raises(grpc.aio.AioRpcError):  # the watch breaks off with the edge
        await asyncio.wait_for(stream.read(), 5)

    async def watch_ended() -> bool:
        return open_grpc_watches() == watches

    await wait_for_async("the broken watch counted closed", watch_ended, within=5)

    async def serving_again() -> bool:
        if gw.gateway.edge is None or edge_pid(gw) == before:
            return False
        try:
            await gateway_pb2_grpc.GatewayServiceStub(gw.channel).GetSystemStatus(
                gateway_pb2.GetSystemStatusRequest(), metadata=auth(VIEWER), timeout=1
            )
        except grpc.aio.AioRpcError:
            return False
        return True

    await wait_for_async("a new edge answering", serving_again, within=10)
    assert gw.runtime.grpc_port == port
    assert gw.gateway.edge is not None and gw.gateway.edge.port == port
    created = await create_host(gw, "nas")
    assert created.name == "hosts/nas"


async def test_the_edge_ends_with_the_gateway(make_gateway: MakeGateway) -> None:
    gw = await make_gateway()
    pid = edge_pid(gw)
    await gw.runtime.stop(grace=0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _config(tmp_path: Path, **settings: object) -> GatewayConfig:
    values: dict[str, object] = {
        "grpc_listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
        "metrics_listen": "127.0.0.1:0",
        "state_dir": str(tmp_path),
        "shutdown_grace_seconds": 0,
        **settings,
    }
    return GatewayConfig(**values)  # type: ignore[arg-type]


async def test_front_edge_without_the_binary_refuses_to_start(tmp_path: Path) -> None:
    config = _config(tmp_path, grpc_front="edge", edge_binary="/nonexistent/hearth-edge")
    with pytest.raises(ConfigError, match="/nonexistent/hearth-edge"):
        await start_service(SPEC, config)


async def test_auto_without_the_binary_serves_grpc_from_python(tmp_path: Path) -> None:
    config = _config(
        tmp_path, grpc_front="auto", edge_binary="/nonexistent/hearth-edge", anonymous_read=True
    )
    runtime = await start_service(SPEC, config)
    try:
        assert runtime.app.edge is None and runtime.grpc_port > 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            status = await gateway_pb2_grpc.GatewayServiceStub(channel).GetSystemStatus(
                gateway_pb2.GetSystemStatusRequest(), timeout=5
            )
        assert len(status.backends) == 3
    finally:
        await runtime.stop(grace=0)


async def test_the_edge_refuses_a_port_in_use_with_a_clear_error(
    gw: Running, tmp_path: Path
) -> None:
    config = _config(tmp_path, grpc_front="edge", grpc_listen=gw.grpc_address)
    with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1"):
        await asyncio.wait_for(start_service(SPEC, config), 10)


async def test_one_rate_limit_and_audit_trail_for_both_faces(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await make_gateway(rate_limits={"hearth.wake.v1.WakeService/WakeHost": "3/min"})
    await create_host(gw)
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    request = wake_pb2.WakeHostRequest(name="hosts/devbox")
    url = f"{gw.http}/v1/hosts/devbox:wake"
    headers = {"Authorization": f"Bearer {OPERATOR}", "X-Forwarded-For": "203.0.113.9"}
    with caplog.at_level(logging.INFO, logger="hearth.audit"):
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.post(url, json={}, headers=headers) as response:
                    assert response.status == 200, await response.text()
            await wake.WakeHost(request, metadata=auth(OPERATOR))
            with pytest.raises(grpc.aio.AioRpcError) as caught:  # the 4th, whichever face
                await wake.WakeHost(request, metadata=auth(OPERATOR))
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            async with session.post(url, json={}, headers=headers) as response:
                assert response.status == 429

        async def wake_lines() -> list[logging.LogRecord] | None:
            lines = [
                r
                for r in caplog.records
                if r.name == "hearth.audit" and r.kv["method"].endswith("/WakeHost")  # type: ignore[attr-defined]
            ]
            return lines if len(lines) >= 5 else None

        lines = await wait_for_async("five WakeHost audit lines", wake_lines, within=5)
    assert lines is not None
    assert sorted(r.getMessage() for r in lines) == ["audit"] * 3 + ["audit refused"] * 2
    # Each line names the real caller: the HTTP face passes on its peer, never a header the
    # caller sent, and the edge trusts that only from the HTTP face's socket.
    clients = {r.kv["client"].rsplit(":", 1)[0] for r in lines}  # type: ignore[attr-defined]
    assert clients == {"127.0.0.1", "ipv4:127.0.0.1"}, clients


async def test_an_ipv4_caller_of_a_dual_stack_port_is_named_as_ipv4(
    make_gateway: MakeGateway,
) -> None:
    gw = await make_gateway(grpc_listen="[::]:0")
    await create_host(gw)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.runtime.grpc_port}") as channel:
        await wake_pb2_grpc.WakeServiceStub(channel).GetHost(
            wake_pb2.GetHostRequest(name="hosts/devbox"), metadata=auth(VIEWER)
        )
    assert gw.backends.wake.metadata_seen[-1]["x-forwarded-for"].startswith("ipv4:127.0.0.1:")


async def test_a_failed_start_leaves_no_edge_running(gw: Running, tmp_path: Path) -> None:
    taken = f"127.0.0.1:{gw.gateway.http_port}"
    made: list[GatewayApp] = []

    def app(config: GatewayConfig, runtime: Runtime[GatewayConfig]) -> GatewayApp:
        made.append(GatewayApp(config, runtime))
        return made[-1]

    config = _config(tmp_path, grpc_front="edge", http_listen=taken)
    with pytest.raises(ConfigError, match="cannot listen on"):
        await start_service(dataclasses.replace(SPEC, app=app), config)
    [gateway] = made
    assert gateway.edge is not None and gateway.edge.process is not None
    assert gateway.edge.process.returncode is not None


async def test_an_answer_too_large_to_pass_is_not_called_a_backend_down(
    make_gateway: MakeGateway,
) -> None:
    """Found by the contract fuzzer: a backend error with 20 kB of trailers came back from
    the edge as UNAVAILABLE "backend wake is unavailable", though wake was up. The caller
    now gets what it gets straight from the backend or through the Python front door."""
    request = wake_pb2.GetHostRequest(name=HUGE_ANSWER)
    codes = {}
    for door in ("edge", "python"):
        gw = await make_gateway(grpc_front=door)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await wake_pb2_grpc.WakeServiceStub(gw.channel).GetHost(request, metadata=auth(VIEWER))
        codes[door] = caught.value.code()
        assert "unavailable" not in (caught.value.details() or ""), caught.value.details()
    async with grpc.aio.insecure_channel(gw.backends.address("wake")) as direct:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await wake_pb2_grpc.WakeServiceStub(direct).GetHost(request)
    codes["direct"] = caught.value.code()
    assert codes["edge"] == codes["python"] == codes["direct"], codes
    assert codes["edge"] is not grpc.StatusCode.UNAVAILABLE
