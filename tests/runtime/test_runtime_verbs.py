"""The runtime's seam: verbs a service calls (add a listener, delegate the public port, expose
a service name, say which health name the serving gauge follows), read-only reports, one job
per interceptor, the version from the package metadata."""

from __future__ import annotations

import importlib.metadata
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hearth_runtime import ConfigError, Runtime, ServiceConfig, ServiceSpec, start_service
from hearth_runtime.grpc_errors import ErrorInterceptor
from hearth_runtime.grpc_metrics import MetricsInterceptor
from hearth_runtime.grpc_trailers import TrailersInterceptor
from hearth_runtime.server import HEALTH_GAUGE, interceptors

ROOT = Path(__file__).resolve().parents[2]
FORWARDED = "hearth.example.v1.Forwarded"


class _App:
    """A service's app that uses the verbs: a second listener, an exposed name."""

    def __init__(self, config: ServiceConfig, runtime: Runtime[ServiceConfig]) -> None:
        self.runtime = runtime
        self.extra_port = 0
        self.closed = False

    async def start(self) -> None:
        self.extra_port = self.runtime.add_listener("127.0.0.1:0")
        self.runtime.expose_service(FORWARDED)
        self.runtime.report_serving_of(FORWARDED)
        await self.runtime.set_serving(False, FORWARDED)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime[ServiceConfig]]:
    config = ServiceConfig(grpc_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    served = await start_service(ServiceSpec("verbs", ServiceConfig, app=_App), config)
    yield served
    await served.stop(grace=0)


async def _health(port: int, name: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        return int(reply.status)


async def test_the_app_is_built_started_and_closed_by_the_runtime() -> None:
    config = ServiceConfig(grpc_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    runtime = await start_service(ServiceSpec("verbs", ServiceConfig, app=_App), config)
    app = runtime.app
    assert isinstance(app, _App) and app.extra_port > 0 and not app.closed
    await runtime.stop(grace=0)
    assert app.closed


async def test_a_listener_added_by_the_app_serves_too(runtime: Runtime[ServiceConfig]) -> None:
    port = runtime.app.extra_port
    assert port not in (0, runtime.grpc_port)
    assert await _health(port, "") == health_pb2.HealthCheckResponse.SERVING
    assert await _health(runtime.grpc_port, "") == health_pb2.HealthCheckResponse.SERVING


async def test_an_exposed_name_is_in_health_and_the_gauge_follows_it(
    runtime: Runtime[ServiceConfig],
) -> None:
    assert FORWARDED in runtime.service_names
    assert await _health(runtime.grpc_port, FORWARDED) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert HEALTH_GAUGE.labels("verbs")._value.get() == 0
    await runtime.set_serving(True, FORWARDED)
    assert HEALTH_GAUGE.labels("verbs")._value.get() == 1


async def test_reports_are_read_only(runtime: Runtime[ServiceConfig]) -> None:
    for name in ("grpc_port", "metrics_port", "service_names", "app"):
        with pytest.raises(AttributeError):
            setattr(runtime, name, 1)
    names = runtime.service_names
    names.append("not.Registered")
    assert "not.Registered" not in runtime.service_names  # a copy, not the runtime's list


async def test_a_taken_port_is_a_config_error(runtime: Runtime[ServiceConfig]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="cannot listen on"):
            runtime.add_listener(f"127.0.0.1:{taken.getsockname()[1]}")


async def test_a_delegated_public_port_is_not_bound_here() -> None:
    class Delegating(_App):
        async def start(self) -> None:
            self.runtime.delegate_public_port(4242)

    with socket.socket() as taken:  # grpc_listen itself is taken: binding it would fail
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = ServiceConfig(grpc_listen=address, metrics_listen="127.0.0.1:0")
        runtime = await start_service(ServiceSpec("verbs", ServiceConfig, app=Delegating), config)
        try:
            assert runtime.grpc_port == 4242
        finally:
            await runtime.stop(grace=0)


def test_one_job_per_interceptor_metrics_first() -> None:
    chain = interceptors(ServiceSpec("verbs", ServiceConfig))
    assert [type(i) for i in chain] == [MetricsInterceptor, TrailersInterceptor, ErrorInterceptor]


def test_the_version_is_read_from_the_package_metadata() -> None:
    version = importlib.metadata.version("hearth")
    assert ServiceSpec("verbs", ServiceConfig).version == version
    spelled = [
        str(path.relative_to(ROOT))
        for folder in ("lib", "services", "scripts", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if f'"{version}"' in path.read_text()
    ]
    assert spelled == [], "the version is read from the package metadata, not spelled"
