"""The gateway put together: backend pool and checks, the forwarding proxy, the gRPC front
door (hearth-edge or this process), gRPC with TLS, and the HTTP face."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import tempfile
from pathlib import Path

import grpc
from aiohttp import web

from hearth_gateway.auth import Authorizer
from hearth_gateway.backends import Backend, BackendPool
from hearth_gateway.catalog import build_catalog
from hearth_gateway.config import GatewayConfig
from hearth_gateway.edge import Edge, EdgeUnavailable, edge_config, find_binary
from hearth_gateway.http import HttpFace, serve
from hearth_gateway.http_limits import Limits
from hearth_gateway.proxy import Forwarder
from hearth_gateway.service import SERVICE
from hearth_runtime import ConfigError, Runtime
from hearth_runtime.broadcast import Broadcaster
from hearth_runtime.logs import kv
from hearth_runtime.ports import BACKENDS

log = logging.getLogger("hearth.gateway")


class GatewayApp:
    """One per process; tests read ``http_port``, ``tls_port`` and ``edge`` after start."""

    def __init__(self, config: GatewayConfig, runtime: Runtime[GatewayConfig]) -> None:
        self.config = config
        self.runtime = runtime
        self.version = runtime.spec.version
        self.catalog = build_catalog(BACKENDS)
        self.authorizer = Authorizer(config, self.catalog)
        self.pool = BackendPool(
            config.backend_addresses(), config.check_interval_seconds, self._backend_changed
        )
        self.forwarder = Forwarder(self.catalog, self.pool, self.authorizer)
        self.rounds: Broadcaster[None] = Broadcaster(max_backlog=100)
        """Ticks after every check round; each WatchSystemStatus sends a fresh status."""
        self.http_port = 0
        self.tls_port = 0
        self.edge: Edge | None = None
        self._private: Path | None = None
        self._runner: web.AppRunner | None = None
        self._face: HttpFace | None = None

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        runtime = self.runtime
        # "" aggregates the backends; the gateway itself serves while its own service does.
        runtime.report_serving_of(SERVICE)
        runtime.add_handlers(self.forwarder)
        # Reflection lists (and describes, from the default pool) every backend service too.
        for backend in BACKENDS:
            for name in self.catalog.backend_services(backend):
                runtime.expose_service(name)
                await runtime.set_serving(False, name)
        await runtime.set_serving(False, "")
        await runtime.set_serving(True, SERVICE)
        await self.pool.check_all()
        runtime.spawn(self._monitor, "backend-checks")

        # The HTTP face (and the edge, for what it does not forward) reach this process's
        # gRPC server over a private unix socket.
        private = self._private = Path(tempfile.mkdtemp(prefix="hearth-gateway-"))
        socket = f"unix:{private / 'grpc.sock'}"
        runtime.add_listener(socket)
        try:
            await self._faces(socket, private)
        except BaseException:
            # Start failed (a port in use, unreadable TLS files): leave nothing running.
            if self.edge is not None:
                await self.edge.close()
            shutil.rmtree(private, ignore_errors=True)
            raise

    async def close(self) -> None:
        if self.edge is not None:
            await self.edge.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._face is not None:
            await self._face.close()
        await self.pool.close()
        if self._private is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._private)

    # --------------------------------------------------------------- backends

    async def _backend_changed(self, backend: Backend) -> None:
        for name in self.catalog.backend_services(backend.name):
            await self.runtime.set_serving(backend.up, name)
        await self.runtime.set_serving(all(b.up for b in self.pool.backends.values()), "")

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval_seconds)
            await self.pool.check_all()
            self.rounds.publish(None)

    # ------------------------------------------------------------------ faces

    async def _faces(self, socket: str, private: Path) -> None:
        """The gRPC front door (with TLS if configured) and the HTTP face."""
        config = self.config
        tls = _tls(config)
        front = await self._front_door(socket, private)
        if tls is not None and self.edge is None:
            # The Python front door: the same server, Authorizer and buckets as grpc_listen.
            cert, key = tls
            creds = grpc.ssl_server_credentials([(key, cert)])
            self.tls_port = self.runtime.add_listener(config.grpc_tls_listen, creds)
        face = HttpFace(
            self.catalog,
            front,
            config.cors_origins,
            config.http_timeout_seconds,
            version=self.version,
            supervisor=self.runtime.supervisor,
            allowed_hosts=config.allowed_hosts,
            max_body_bytes=config.http_max_body_bytes,
            body_timeout=config.http_header_timeout_seconds,
        )
        limits = Limits(
            header_timeout=config.http_header_timeout_seconds,
            idle_timeout=config.http_idle_timeout_seconds,
            max_connections=config.http_max_connections,
            max_url_bytes=config.http_max_url_bytes,
            max_header_bytes=config.http_max_header_bytes,
        )
        ssl_context = None
        if tls is not None and config.tls_cert_file and config.tls_key_file:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        try:
            self._runner, self.http_port = await serve(
                face.app(), config.http_listen, ssl_context, limits
            )
        except OSError as exc:
            await face.close()
            raise ConfigError(f"cannot listen on {config.http_listen}: {exc.strerror}") from None
        self._face = face
        scheme = "https" if ssl_context else "http"
        host = config.http_listen.rpartition(":")[0]
        log.info("web page and HTTP/JSON", extra=kv(http=f"{scheme}://{host}:{self.http_port}/"))

    async def _front_door(self, socket: str, private: Path) -> str:
        """Hand grpc_listen (and grpc_tls_listen) to hearth-edge, unless configured (or
        forced) to serve them here.

        Returns the socket the HTTP face should call: the edge's, or this process's own.
        """
        config = self.config
        if config.grpc_front == "python":
            return socket
        binary = find_binary(config.edge_binary)
        if binary is None:
            if config.grpc_front == "edge":
                raise ConfigError(f"grpc_front is edge but {config.edge_binary} is not installed")
            log.warning(
                "hearth-edge not found: gRPC is served by Python (about twice the latency)",
                extra=kv(edge_binary=config.edge_binary),
            )
            return socket
        # The HTTP face's calls go through the edge too (one rate limit, one audit trail),
        # on a socket of its own where the edge trusts the caller's x-forwarded-for.
        edge_socket = f"unix:{private / 'edge.sock'}"
        tls_files = None
        if config.tls_cert_file and config.tls_key_file:
            tls_files = (config.tls_cert_file.resolve(), config.tls_key_file.resolve())
        settings = edge_config(
            config, self.catalog, self.authorizer, BACKENDS, socket, edge_socket, tls_files
        )
        edge = Edge(binary, settings, private, self.runtime.supervisor)
        try:
            port = await edge.start()
        except EdgeUnavailable as exc:
            if config.grpc_front == "edge":
                raise ConfigError(f"hearth-edge cannot start: {exc}") from None
            log.warning(
                "hearth-edge cannot start: gRPC is served by Python", extra=kv(error=str(exc))
            )
            return socket
        self.edge = edge
        self.tls_port = edge.tls_port
        self.runtime.delegate_public_port(port)
        self.runtime.on_drain(edge.drain)
        return edge_socket


def _tls(config: GatewayConfig) -> tuple[bytes, bytes] | None:
    if not config.tls_cert_file and not config.tls_key_file:
        return None
    if not (config.tls_cert_file and config.tls_key_file):
        raise ConfigError("tls_cert_file and tls_key_file must be given together")
    try:
        return config.tls_cert_file.read_bytes(), config.tls_key_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read TLS files: {exc}") from None
