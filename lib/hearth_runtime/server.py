"""Server bootstrap shared by every service: gRPC + health + reflection + metrics + shutdown.

A service describes itself with a :class:`ServiceSpec` whose ``setup`` coroutine registers
servicers and background tasks on the :class:`Runtime`; :func:`run_service` does the rest::

    SPEC = ServiceSpec(name="wake", config_cls=WakeConfig, setup=setup)
    def main() -> None:
        run_service(SPEC)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Gauge, Info, start_http_server

from hearth_runtime.config import ConfigError, ServiceConfig, load_config
from hearth_runtime.grpc_metrics import MetricsInterceptor
from hearth_runtime.logs import kv, setup_logging
from hearth_runtime.supervisor import CoroFactory, Supervisor

log = logging.getLogger("hearth.runtime")

C = TypeVar("C", bound=ServiceConfig)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

BUILD_INFO = Info("hearth_build", "hearth version and the service in this process.")
HEALTH_GAUGE = Gauge(
    "hearth_service_serving", "1 while grpc.health.v1 says SERVING for the service.", ("service",)
)


@dataclass
class ServiceSpec(Generic[C]):
    """What makes a service: its name, its config class and how to set it up."""

    name: str
    config_cls: type[C]
    setup: Callable[[Runtime[C]], Awaitable[None]]
    version: str = "0.1.0"


@dataclass
class Runtime(Generic[C]):
    """Handed to a service's ``setup``: the server, its health, config and task helpers."""

    spec: ServiceSpec[C]
    config: C
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    service_names: list[str] = field(default_factory=list)
    grpc_port: int = 0
    metrics_port: int = 0
    supervisor: Supervisor = field(default_factory=Supervisor)
    _cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _shutting_down: bool = False
    _explicit: set[str] = field(default_factory=set)
    _wanted: dict[str, bool] = field(default_factory=dict)
    serving_gauge_follows: str = ""
    """The health name whose status ``hearth_service_serving`` reports (default: overall)."""
    binds_grpc_listen: bool = True
    """False when setup hands ``grpc_listen`` to another process (the gateway's edge) and
    sets ``grpc_port`` itself; the server then listens only where setup added ports."""
    _drains: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add_servicer(
        self, add_fn: Callable[[Any, grpc.aio.Server], None], servicer: Any, full_name: str
    ) -> None:
        """Register ``servicer`` (e.g. ``wake_pb2_grpc.add_WakeServiceServicer_to_server``)."""
        add_fn(servicer, self.server)
        self.service_names.append(full_name)

    def __post_init__(self) -> None:
        self.supervisor.on_health_change = self._tasks_changed

    async def set_serving(self, serving: bool, service: str | None = None) -> None:
        """Say whether one service (or the overall ``""`` and every service) can serve.

        What health reports is this word AND no background task failing: a task that keeps
        crashing makes every name NOT_SERVING until it runs stably again."""
        if self._shutting_down:
            return
        names = [service] if service is not None else ["", *self.service_names]
        for name in names:
            self._explicit.add(name)
            self._wanted[name] = serving
            await self._publish(name)

    async def _publish(self, name: str) -> None:
        serving = self._wanted.get(name, True) and not self.supervisor.failing()
        await self.health.set(name, SERVING if serving else NOT_SERVING)
        if name == self.serving_gauge_follows:
            HEALTH_GAUGE.labels(self.spec.name).set(1 if serving else 0)

    def _tasks_changed(self) -> None:
        if self._shutting_down:
            return
        failing = self.supervisor.failing()
        if failing:
            log.error("NOT_SERVING: background tasks keep failing", extra=kv(**failing))

        async def publish_all() -> None:
            for name in list(self._wanted):
                await self._publish(name)

        self.supervisor.spawn(publish_all, "health-publish", restart=False)

    def spawn(
        self,
        factory: CoroFactory,
        name: str,
        *,
        family: str | None = None,
        restart: bool = True,
    ) -> asyncio.Task[Any]:
        """Run ``factory()`` under the supervisor for the life of the service: a crash is
        logged, counted and restarted with backoff (see :mod:`hearth_runtime.supervisor`)."""
        return self.supervisor.spawn(factory, name, family=family, restart=restart)

    def on_drain(self, drain: Callable[[], Awaitable[None]]) -> None:
        """Run ``drain`` at shutdown alongside the server's own grace period."""
        self._drains.append(drain)

    def on_shutdown(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        """Run ``cleanup`` after the server stopped taking calls (last in, first run)."""
        self._cleanups.append(cleanup)

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, let in-flight calls finish within the grace period, stop tasks."""
        if self._shutting_down:
            return
        await self.set_serving(False)
        self._shutting_down = True
        await self.health.enter_graceful_shutdown()
        grace = self.config.shutdown_grace_seconds if grace is None else grace
        await asyncio.gather(self.server.stop(grace), *(drain() for drain in self._drains))
        await self.supervisor.close()
        for cleanup in reversed(self._cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("cleanup failed during shutdown")


def _bind(server: grpc.aio.Server, address: str) -> int:
    port = server.add_insecure_port(address)
    if address.startswith("unix:"):
        # Owner and group connect, nobody else, whatever the umask (022 would leave the group
        # unable to connect): docker-compose.yml joins the gateway to the backends this way.
        path = address.removeprefix("unix:")
        os.chmod(path.removeprefix("//") if path.startswith("///") else path, 0o660)
    elif port == 0:
        raise ConfigError(f"cannot listen on {address} (address in use or not available)")
    return port


async def start_service(spec: ServiceSpec[C], config: C) -> Runtime[C]:
    """Build and start a service in this event loop (used by ``run_service`` and tests)."""
    server = grpc.aio.server(
        interceptors=[
            MetricsInterceptor(
                error_domain=f"{spec.name}.hearth",
                trailers=(("hearth-service", spec.name), ("hearth-version", spec.version)),
            )
        ],
        options=[("grpc.so_reuseport", 0)],
    )
    health_servicer = health.aio.HealthServicer()
    runtime: Runtime[C] = Runtime(spec=spec, config=config, server=server, health=health_servicer)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await spec.setup(runtime)
    names = [*runtime.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    if runtime.binds_grpc_listen:
        runtime.grpc_port = _bind(server, config.grpc_listen)
    await server.start()
    # Health starts SERVING unless setup already said otherwise for a service.
    for name in ["", *runtime.service_names]:
        if name not in runtime._explicit:
            await runtime.set_serving(True, name)
    return runtime


def start_metrics(address: str) -> int:
    """Serve Prometheus /metrics (process metrics included) on ``address``; return the port."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    result = start_http_server(int(port), addr=host)
    server = result[0] if isinstance(result, tuple) else None
    return int(server.server_port) if server is not None else int(port)


async def _serve(spec: ServiceSpec[C], config: C) -> int:
    metrics_port = start_metrics(config.metrics_listen)
    runtime = await start_service(spec, config)
    runtime.metrics_port = metrics_port
    BUILD_INFO.info({"service": spec.name, "version": spec.version})
    log.info(
        "serving",
        extra=kv(
            grpc=config.grpc_listen
            if config.grpc_listen.startswith("unix:")
            else f"{_host(config.grpc_listen)}:{runtime.grpc_port}",
            metrics=f"{_host(config.metrics_listen)}:{metrics_port}",
            services=",".join(runtime.service_names),
            version=spec.version,
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", extra=kv(grace_seconds=config.shutdown_grace_seconds))
    await runtime.stop()
    log.info("stopped")
    return 0


def _host(address: str) -> str:
    return address.rpartition(":")[0]


def run_service(spec: ServiceSpec[C], argv: Sequence[str] | None = None) -> None:
    """Parse ``--config``, load config, serve until SIGTERM/SIGINT, exit 0 (2 on bad config)."""
    parser = argparse.ArgumentParser(
        prog=f"hearth-{spec.name}",
        description=f"hearth {spec.name} service. Settings: YAML file and/or environment "
        f"variables (prefix {spec.config_cls.model_config.get('env_prefix')}).",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    args = parser.parse_args(argv)
    try:
        config = load_config(spec.config_cls, args.config)
    except ConfigError as exc:
        setup_logging(spec.name)
        print(f"hearth-{spec.name}: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(spec.name, config.log_level)
    try:
        code = asyncio.run(_serve(spec, config))
    except ConfigError as exc:
        print(f"hearth-{spec.name}: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)
