"""The gateway's fixtures: a gateway in this process in front of small backends that speak
the real contracts (gateway_doubles), and a TLS certificate."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_doubles import FakeBackends  # type: ignore[import-not-found]
from gateway_harness import OPERATOR, VIEWER, MakeGateway, Running  # type: ignore[import-not-found]

from hearth_client.tokens import hash_token
from hearth_gateway.config import GatewayConfig
from hearth_gateway.main import SPEC
from hearth_runtime import start_service


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
