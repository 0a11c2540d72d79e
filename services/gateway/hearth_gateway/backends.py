"""The backends behind the gateway: one channel each, checked every few seconds.

A check is a grpc.health.v1 ``Check`` (its round trip is the backend's RTT; its
``hearth-version`` trailer the version) and, when a backend comes up, a reflection listing of
its services. Channels reconnect with a short backoff so a backend that comes back is used
again within about a second, without restarting the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import Gauge, Histogram

from hearth.gateway.v1 import gateway_pb2
from hearth_runtime.logs import kv
from hearth_runtime.timeconv import duration_from_seconds, timestamp_from_epoch

log = logging.getLogger("hearth.gateway.backends")

BACKEND_UP = Gauge(
    "hearth_gateway_backend_up", "1 while the backend answers SERVING.", ("backend",)
)
BACKEND_RTT = Histogram(
    "hearth_gateway_backend_check_seconds",
    "Round-trip time of the gateway's health check of each backend.",
    ("backend",),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

CHANNEL_OPTIONS = [
    # Come back quickly after a backend restart (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # The caller retries if it wants to; buffering every call for a retry costs latency.
    ("grpc.enable_retries", 0),
]
_SERVING = health_pb2.HealthCheckResponse
# grpc.health.v1's answer -> the contract's HealthStatus.
HEALTH = {
    _SERVING.SERVING: gateway_pb2.HEALTH_STATUS_SERVING,
    _SERVING.NOT_SERVING: gateway_pb2.HEALTH_STATUS_NOT_SERVING,
    _SERVING.SERVICE_UNKNOWN: gateway_pb2.HEALTH_STATUS_SERVICE_UNKNOWN,
    _SERVING.UNKNOWN: gateway_pb2.HEALTH_STATUS_UNKNOWN,
}


def _health_name(health: gateway_pb2.HealthStatus.ValueType) -> str:
    """SERVING, NOT_SERVING, UNREACHABLE, ... (for logs and error texts)."""
    return gateway_pb2.HealthStatus.Name(health).removeprefix("HEALTH_STATUS_")


@dataclass
class Backend:
    name: str
    address: str
    channel: grpc.aio.Channel
    up: bool = False
    health: gateway_pb2.HealthStatus.ValueType = gateway_pb2.HEALTH_STATUS_UNSPECIFIED
    version: str = ""
    rtt: float = 0.0
    error: str = "not checked yet"
    services: list[str] = field(default_factory=list)
    last_check: float = 0.0

    def describe(self) -> gateway_pb2.Backend:
        out = gateway_pb2.Backend(
            name=self.name,
            address=self.address,
            up=self.up,
            health=self.health,
            version=self.version,
            round_trip=duration_from_seconds(self.rtt),
            error=self.error,
            services=self.services,
        )
        if self.last_check:
            out.last_check.CopyFrom(timestamp_from_epoch(self.last_check))
        return out

    def unavailable_message(self, details: str) -> str:
        return f"backend {self.name} ({self.address}) is unavailable: {details}"


async def _list_services(channel: grpc.aio.Channel, seconds: float) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=seconds
    )
    async for response in call:
        return sorted(s.name for s in response.list_services_response.service)
    return []


class BackendPool:
    """The channels and the periodic checks; ``on_change`` runs when up/health changes."""

    def __init__(
        self,
        addresses: dict[str, str],
        interval: float,
        on_change: Callable[[Backend], Awaitable[None]],
    ) -> None:
        self.backends = {
            name: Backend(name, address, grpc.aio.insecure_channel(address, CHANNEL_OPTIONS))
            for name, address in addresses.items()
        }
        self.interval = interval
        self.on_change = on_change
        self.checked = asyncio.Event()

    async def check(self, backend: Backend) -> None:
        timeout = max(0.5, min(self.interval, 2.0))
        before = (backend.up, backend.health)
        start = time.perf_counter()
        try:
            call = health_pb2_grpc.HealthStub(backend.channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
            response = await call
            backend.rtt = time.perf_counter() - start
            BACKEND_RTT.labels(backend.name).observe(backend.rtt)
            trailers = dict(await call.trailing_metadata() or ())
            backend.version = str(trailers.get("hearth-version", backend.version))
            backend.health = HEALTH.get(response.status, gateway_pb2.HEALTH_STATUS_UNKNOWN)
            backend.up = response.status == health_pb2.HealthCheckResponse.SERVING
            backend.error = "" if backend.up else f"health says {_health_name(backend.health)}"
            if not backend.services:
                backend.services = await _list_services(backend.channel, timeout)
        except grpc.aio.AioRpcError as exc:
            backend.up = False
            backend.health = gateway_pb2.HEALTH_STATUS_UNREACHABLE
            backend.error = f"{exc.code().name}: {exc.details()}"
            backend.services = []
        backend.last_check = time.time()
        BACKEND_UP.labels(backend.name).set(1 if backend.up else 0)
        if (backend.up, backend.health) != before:
            log.info(
                "backend is up" if backend.up else "backend is down",
                extra=kv(
                    backend=backend.name,
                    address=backend.address,
                    health=_health_name(backend.health),
                    error=backend.error,
                ),
            )
            await self.on_change(backend)

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(b) for b in self.backends.values()))
        self.checked.set()

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.channel.close()
