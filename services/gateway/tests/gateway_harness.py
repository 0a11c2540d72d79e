"""Gateway test helpers: tokens, the running gateway's handle, small calls; the fixtures that make
it are in conftest.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from gateway_doubles import FakeBackends  # type: ignore[import-not-found]
from prometheus_client import REGISTRY

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_gateway.app import GatewayApp
from hearth_gateway.config import GatewayConfig
from hearth_runtime import Runtime

OPERATOR = "operator-secret-token"
VIEWER = "viewer-secret-token"


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
