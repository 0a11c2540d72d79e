"""A gateway in this process in front of small backends that speak the real contracts."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_doubles import FakeBackends  # type: ignore[import-not-found]
from prometheus_client import REGISTRY

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_client.tokens import hash_token
from hearth_gateway.app import GatewayApp
from hearth_gateway.config import GatewayConfig
from hearth_gateway.main import SPEC
from hearth_runtime import Runtime, start_service

OPERATOR = "operator-secret-token"
VIEWER = "viewer-secret-token"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (TLS tests), and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Running:
    gateway: GatewayApp
    runtime: Runtime[GatewayConfig]
    backends: FakeBackends
    channel: grpc.aio.Channel

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.runtime.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"


async def create_host(gw: Running, host_id: str = "devbox") -> wake_pb2.Host:
    wake = wake_pb2_grpc.WakeServiceStub(gw.channel)
    return await wake.CreateHost(
        wake_pb2.CreateHostRequest(
            host_id=host_id, host=wake_pb2.Host(mac="02:00:00:00:00:01", ipv4="198.18.0.9")
        ),
        metadata=auth(OPERATOR),
    )


def open_grpc_watches() -> float:
    """The gateway's active-streams gauge for WatchHostEvents on its gRPC face."""
    labels = {"face": "grpc", "method": "hearth.wake.v1.WakeService/WatchHostEvents"}
    return REGISTRY.get_sample_value("hearth_gateway_active_streams", labels) or 0.0


MakeGateway = Callable[..., Awaitable[Running]]


@pytest.fixture
def front() -> str:
    """Who serves the gateway's gRPC port: the edge unless a test module asks for both.

    "edge", not "auto": a gateway that quietly fell back to Python would pass these tests
    without the edge ever being run.
    """
    return "edge"


@pytest.fixture
async def make_gateway(front: str) -> AsyncIterator[MakeGateway]:
    started: list[Running] = []

    async def make(**settings: Any) -> Running:
        backends = FakeBackends()
        for name in ("wake", "audio", "ci"):
            await backends.start(name)
        values: dict[str, Any] = {
            "grpc_listen": "127.0.0.1:0",
            "http_listen": "127.0.0.1:0",
            "metrics_listen": "127.0.0.1:0",
            "shutdown_grace_seconds": 0,
            "grpc_front": front,
            "check_interval_seconds": 0.2,
            "wake_address": backends.address("wake"),
            "audio_address": backends.address("audio"),
            "ci_address": backends.address("ci"),
            "tokens": [
                {"name": "olivia", "role": "operator", "sha256": hash_token(OPERATOR)},
                {"name": "victor", "role": "viewer", "sha256": hash_token(VIEWER)},
            ],
            **settings,
        }
        runtime = await start_service(SPEC, GatewayConfig(**values))
        gateway = runtime.app
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
        running = Running(gateway, runtime, backends, channel)
        started.append(running)
        return running

    yield make
    for running in started:
        await running.channel.close()
        await running.runtime.stop(grace=0)
        for name in running.backends.runtimes:
            await running.backends.stop(name)


@pytest.fixture
async def gw(make_gateway: MakeGateway) -> Running:
    return await make_gateway()
