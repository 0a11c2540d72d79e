"""hearth-gateway as a real process; TLS with a configured certificate; bad configuration."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import aiohttp
import grpc
import pytest
from gateway_doubles import FakeBackends  # type: ignore[import-not-found]
from gateway_harness import VIEWER, MakeGateway, auth  # type: ignore[import-not-found]

from hearth.auth.v1 import policy_pb2
from hearth.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_client.tokens import hash_token
from hearth_testing import ServiceProcess, free_port, metric_value, scrape, wait_for


async def test_the_process_serves_grpc_http_and_the_page(tmp_path: Path) -> None:
    backends = FakeBackends()
    for name in ("wake", "audio", "ci"):
        await backends.start(name)
    http_port = free_port()
    viewer = {"name": "v", "role": "viewer", "sha256": hash_token(VIEWER)}
    env = {
        "HEARTH_GATEWAY_GRPC_LISTEN": "127.0.0.1:0",
        "HEARTH_GATEWAY_METRICS_LISTEN": "127.0.0.1:0",
        "HEARTH_GATEWAY_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "HEARTH_GATEWAY_STATE_DIR": str(tmp_path),
        "HEARTH_GATEWAY_WAKE_ADDRESS": backends.address("wake"),
        "HEARTH_GATEWAY_AUDIO_ADDRESS": backends.address("audio"),
        "HEARTH_GATEWAY_CI_ADDRESS": backends.address("ci"),
        "HEARTH_GATEWAY_TOKENS": json.dumps([viewer]),
    }
    proc = ServiceProcess("gateway", env=env)
    await asyncio.to_thread(proc.start)
    try:
        assert f"http://127.0.0.1:{http_port}/" in proc.output
        async with grpc.aio.insecure_channel(proc.grpc_address) as channel:
            status = await gateway_pb2_grpc.GatewayServiceStub(channel).GetSystemStatus(
                gateway_pb2.GetSystemStatusRequest(), metadata=auth(VIEWER)
            )
        assert all(b.up for b in status.backends)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{http_port}/static/app.js") as response,
        ):
            assert response.status == 200 and "EventSource" in await response.text()
        assert "gRPC front door: hearth-edge" in proc.output
        async with grpc.aio.insecure_channel(proc.grpc_address) as channel:
            await wake_pb2_grpc.WakeServiceStub(channel).ListHosts(
                wake_pb2.ListHostsRequest(), metadata=auth(VIEWER)
            )

        def forwarded_call_counted() -> bool:
            samples = scrape(proc.metrics_address)
            if metric_value(samples, "hearth_gateway_backend_up") is None:
                return False
            # Served by the edge, counted in this process's metrics.
            calls = metric_value(
                samples, "grpc_server_handled_total", grpc_method="ListHosts", grpc_code="OK"
            )
            return calls == 1

        await asyncio.to_thread(wait_for, "ListHosts in /metrics", forwarded_call_counted, 5)
    finally:
        await asyncio.to_thread(proc.stop)
        for name in ("wake", "audio", "ci"):
            await backends.stop(name)
    assert proc.proc is not None and proc.proc.returncode == 0


def test_bad_configuration_names_the_setting() -> None:
    proc = ServiceProcess("gateway", env={"HEARTH_GATEWAY_RATE_LIMITS": '{"x/Y": "lots"}'})
    with pytest.raises(RuntimeError) as caught:
        proc.start()
    assert "HEARTH_GATEWAY_RATE_LIMITS" in str(caught.value) and "10/min" in str(caught.value)


async def test_tls_on_both_faces(make_gateway: MakeGateway, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    gw = await make_gateway(tls_cert_file=cert, tls_key_file=key, grpc_tls_listen="127.0.0.1:0")
    tls_port = gw.gateway.tls_port
    creds = grpc.ssl_channel_credentials(cert.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{tls_port}", creds) as channel:
        status = await gateway_pb2_grpc.GatewayServiceStub(channel).GetSystemStatus(
            gateway_pb2.GetSystemStatusRequest(), metadata=auth(VIEWER)
        )
    assert status.role == policy_pb2.ROLE_VIEWER
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://localhost:{gw.gateway.http_port}/v1/system/status"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=context, headers={"Authorization": f"Bearer {VIEWER}"}) as response,
    ):
        assert response.status == 200
        assert len((await response.json())["backends"]) == 3
