"""Server bootstrap shared by every service: gRPC + health + reflection + metrics + shutdown.

A service is three modules of one shape: ``app.py`` (its state and background tasks, an
:class:`App`), ``service.py`` (the gRPC servicer, a thin face over the app) and ``main.py``,
a :class:`ServiceSpec` of a few lines that :func:`run_service` serves::

    SPEC = ServiceSpec(
        name="wake",
        config_cls=WakeConfig,
        app=WakeApp,
        servicer=WakeServicer,
        register=wake_pb2_grpc.add_WakeServiceServicer_to_server,
        service_name=wake_pb2.DESCRIPTOR.services_by_name["WakeService"].full_name,
    )

The runtime builds the app (``app(config, runtime)``), registers the servicer built on it,
starts the app and closes it at shutdown. An app talks to the runtime through verbs only
(``spawn``, ``set_serving``, ``add_listener``, ``delegate_public_port``, ``expose_service``,
...). A spec may instead give a plain ``setup`` coroutine (tests build small services so).
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
from typing import Any, Generic, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Gauge, Info, start_http_server

from hearth_runtime.config import ConfigError, ServiceConfig, load_config
from hearth_runtime.grpc_errors import ErrorInterceptor
from hearth_runtime.grpc_metrics import MetricsInterceptor
from hearth_runtime.grpc_trailers import TrailersInterceptor
from hearth_runtime.logs import kv, setup_logging
from hearth_runtime.supervisor import CoroFactory, Supervisor
from hearth_runtime.version import VERSION

log = logging.getLogger("hearth.runtime")

C = TypeVar("C", bound=ServiceConfig)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

BUILD_INFO = Info("hearth_build", "hearth version and the service in this process.")
HEALTH_GAUGE = Gauge(
    "hearth_service_serving", "1 while grpc.health.v1 says SERVING for the service.", ("service",)
)


class App(Protocol):
    """A service's state and background tasks: started and closed by the runtime."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class ServiceSpec(Generic[C]):
    """What makes a service: its name, its config class, and either its app with the
    servicer that faces it (the shape of every hearth service) or a ``setup`` coroutine."""

    name: str
    config_cls: type[C]
    setup: Callable[[Runtime[C]], Awaitable[None]] | None = None
    version: str = VERSION
    app: Callable[[C, Runtime[C]], Any] | None = None
    """Builds the :class:`App` from the config and the runtime (called once, before start)."""
    servicer: Callable[[Any], Any] | None = None
    """Builds the gRPC servicer from the app."""
    register: Callable[[Any, grpc.aio.Server], None] | None = None
    """The generated ``add_<Service>Servicer_to_server``."""
    service_name: str = ""
    """The servicer's full gRPC service name (health, reflection)."""

    async def compose(self, runtime: Runtime[C]) -> None:
        """Build the app, register its servicer, start it; close it at shutdown."""
        if self.setup is not None:
            await self.setup(runtime)
        if self.app is None:
            return
        app = self.app(runtime.config, runtime)
        runtime._app = app
        if self.servicer is not None and self.register is not None:
            runtime.add_servicer(self.register, self.servicer(app), self.service_name)
        await app.start()
        runtime.on_shutdown(app.close)


@dataclass
class Runtime(Generic[C]):
    """Handed to a service's app: config, health, tasks, and verbs to shape the server."""

    spec: ServiceSpec[C]
    config: C
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    supervisor: Supervisor = field(default_factory=Supervisor)
    _service_names: list[str] = field(default_factory=list)
    _grpc_port: int = 0
    _metrics_port: int = 0
    _public_port_delegated: bool = False
    _gauge_name: str = ""
    _app: Any = None
    _cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _shutting_down: bool = False
    _explicit: set[str] = field(default_factory=set)
    _wanted: dict[str, bool] = field(default_factory=dict)
    _drains: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.supervisor.on_health_change = self._tasks_changed

    # ------------------------------------------------------------------ what it reports

    @property
    def app(self) -> Any:
        """The service's app (None for a spec with only a ``setup``)."""
        return self._app

    @property
    def service_names(self) -> list[str]:
        """Every service name health and reflection know (servicers and exposed ones)."""
        return list(self._service_names)

    @property
    def grpc_port(self) -> int:
        """The public gRPC port (the one bound for ``grpc_listen``, or the delegate's)."""
        return self._grpc_port

    @property
    def metrics_port(self) -> int:
        return self._metrics_port

    # ------------------------------------------------------------ verbs: the server

    def add_servicer(
        self, add_fn: Callable[[Any, grpc.aio.Server], None], servicer: Any, full_name: str
    ) -> None:
        """Register ``servicer`` (e.g. ``wake_pb2_grpc.add_WakeServiceServicer_to_server``)."""
        add_fn(servicer, self.server)
        self._service_names.append(full_name)

    def add_handlers(self, *handlers: grpc.GenericRpcHandler) -> None:
        """Serve calls no servicer claims through ``handlers`` (e.g. a forwarding proxy)."""
        self.server.add_generic_rpc_handlers(handlers)

    def expose_service(self, full_name: str) -> None:
        """List a service served by a generic handler in reflection and health."""
        self._service_names.append(full_name)

    def add_listener(self, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
        """Serve gRPC on ``address`` too (TLS with ``credentials``); return the port bound
        (0 for a unix socket). A TCP address that cannot be bound is a ConfigError."""
        return _bind(self.server, address, credentials)

    def delegate_public_port(self, port: int) -> None:
        """Another process (the gateway's edge) serves ``grpc_listen`` and reached this one
        through a listener of its own: do not bind ``grpc_listen``; report ``port``."""
        self._public_port_delegated = True
        self._grpc_port = port

    def report_serving_of(self, name: str) -> None:
        """``hearth_service_serving`` follows health name ``name`` (default: overall "")."""
        self._gauge_name = name

    # ------------------------------------------------------------------ verbs: health

    async def set_serving(self, serving: bool, service: str | None = None) -> None:
        """Say whether one service (or the overall ``""`` and every service) can serve.

        What health reports is this word AND no background task failing: a task that keeps
        crashing makes every name NOT_SERVING until it runs stably again."""
        if self._shutting_down:
            return
        names = [service] if service is not None else ["", *self._service_names]
        for name in names:
            self._explicit.add(name)
            self._wanted[name] = serving
            await self._publish(name)

    async def _publish(self, name: str) -> None:
        serving = self._wanted.get(name, True) and not self.supervisor.failing()
        await self.health.set(name, SERVING if serving else NOT_SERVING)
        if name == self._gauge_name:
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

    # ----------------------------------------------------------- verbs: tasks, shutdown

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


def _bind(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None
) -> int:
    try:
        if credentials is not None:
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpc.aio raises where grpc returns 0
        raise ConfigError(f"cannot listen on {address} (address in use or not available)") from None
    if address.startswith("unix:"):
        # Owner and group connect, nobody else, whatever the umask (022 would leave the group
        # unable to connect): docker-compose.yml joins the gateway to the backends this way.
        path = address.removeprefix("unix:")
        os.chmod(path.removeprefix("//") if path.startswith("///") else path, 0o660)
    elif port == 0:
        raise ConfigError(f"cannot listen on {address} (address in use or not available)")
    return port


def interceptors(spec: ServiceSpec[Any]) -> list[grpc.aio.ServerInterceptor]:
    """One job each, outermost first: metrics see the code the error mapping set."""
    return [
        MetricsInterceptor(),
        TrailersInterceptor((("hearth-service", spec.name), ("hearth-version", spec.version))),
        ErrorInterceptor(error_domain=f"{spec.name}.hearth"),
    ]


async def start_service(spec: ServiceSpec[C], config: C) -> Runtime[C]:
    """Build and start a service in this event loop (used by ``run_service`` and tests)."""
    server = grpc.aio.server(interceptors=interceptors(spec), options=[("grpc.so_reuseport", 0)])
    health_servicer = health.aio.HealthServicer()
    runtime: Runtime[C] = Runtime(spec=spec, config=config, server=server, health=health_servicer)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await spec.compose(runtime)
    names = [*runtime.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    if not runtime._public_port_delegated:
        runtime._grpc_port = _bind(server, config.grpc_listen)
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
    runtime._metrics_port = metrics_port
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
