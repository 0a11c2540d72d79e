"""hearth-gateway: the front door (gRPC proxy, HTTP/JSON, web page, auth)."""

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

from hearth.gateway.v1 import gateway_pb2_grpc
from hearth_gateway.auth import Authorizer
from hearth_gateway.backends import Backend, BackendPool
from hearth_gateway.catalog import Catalog, build_catalog
from hearth_gateway.config import GatewayConfig
from hearth_gateway.edge import Edge, EdgeUnavailable, edge_config, find_binary
from hearth_gateway.http import HttpFace, serve
from hearth_gateway.http_limits import Limits
from hearth_gateway.proxy import Forwarder
from hearth_gateway.service import SERVICE, GatewayServicer
from hearth_runtime import ConfigError, Runtime, ServiceSpec, run_service
from hearth_runtime.logs import kv

log = logging.getLogger("hearth.gateway")

BACKENDS = ("wake", "audio", "ci")


class Gateway:
    """What ``setup`` builds; tests keep the instance to learn the HTTP port."""

    def __init__(self) -> None:
        self.http_port = 0
        self.tls_port = 0
        self.pool: BackendPool | None = None
        self.servicer: GatewayServicer | None = None
        self.edge: Edge | None = None
        self.forwarder: Forwarder | None = None

    async def setup(self, runtime: Runtime[GatewayConfig]) -> None:
        config = runtime.config
        catalog = build_catalog(BACKENDS)
        authorizer = Authorizer(config, catalog)
        # "" aggregates the backends; the gateway itself serves while its own service does.
        runtime.serving_gauge_follows = SERVICE

        async def changed(backend: Backend) -> None:
            for name in catalog.backend_services(backend.name):
                await runtime.set_serving(backend.up, name)
            await runtime.set_serving(all(b.up for b in pool.backends.values()), "")

        pool = self.pool = BackendPool(
            config.backend_addresses(), config.check_interval_seconds, changed
        )
        servicer = self.servicer = GatewayServicer(catalog, pool, authorizer, runtime.spec.version)
        runtime.add_servicer(
            gateway_pb2_grpc.add_GatewayServiceServicer_to_server, servicer, SERVICE
        )
        forwarder = self.forwarder = Forwarder(catalog, pool, authorizer)
        runtime.server.add_generic_rpc_handlers((forwarder,))
        # Reflection lists (and describes, from the default pool) every backend service too.
        for backend in BACKENDS:
            for name in catalog.backend_services(backend):
                runtime.service_names.append(name)
                await runtime.set_serving(False, name)
        await runtime.set_serving(False, "")
        await runtime.set_serving(True, SERVICE)
        await pool.check_all()

        async def monitor() -> None:
            while True:
                await asyncio.sleep(config.check_interval_seconds)
                await pool.check_all()
                servicer.rounds.publish(None)

        runtime.spawn(monitor, "backend-checks")

        # The HTTP face (and the edge, for what it does not forward) reach this process's
        # gRPC server over a private unix socket.
        private = Path(tempfile.mkdtemp(prefix="hearth-gateway-"))
        socket = f"unix:{private / 'grpc.sock'}"
        runtime.server.add_insecure_port(socket)
        try:
            runner, face = await self._faces(runtime, catalog, authorizer, socket, private)
        except BaseException:
            # Setup failed (a port in use, unreadable TLS files): leave nothing running.
            if self.edge is not None:
                await self.edge.close()
            shutil.rmtree(private, ignore_errors=True)
            raise

        async def cleanup() -> None:
            if self.edge is not None:
                await self.edge.close()
            await runner.cleanup()
            await face.close()
            await pool.close()
            with contextlib.suppress(OSError):
                shutil.rmtree(private)

        runtime.on_shutdown(cleanup)

    async def _faces(
        self,
        runtime: Runtime[GatewayConfig],
        catalog: Catalog,
        authorizer: Authorizer,
        socket: str,
        private: Path,
    ) -> tuple[web.AppRunner, HttpFace]:
        """The gRPC front door (with TLS if configured) and the HTTP face."""
        config = runtime.config
        tls = _tls(config)
        front = await self._front_door(runtime, catalog, authorizer, socket, private)
        if tls is not None and self.edge is None:
            # The Python front door: the same server, Authorizer and buckets as grpc_listen.
            cert, key = tls
            creds = grpc.ssl_server_credentials([(key, cert)])
            self.tls_port = runtime.server.add_secure_port(config.grpc_tls_listen, creds)
            if self.tls_port == 0:
                raise ConfigError(f"cannot listen on {config.grpc_tls_listen}")
        face = HttpFace(
            catalog,
            front,
            config.cors_origins,
            config.http_timeout_seconds,
            version=runtime.spec.version,
            supervisor=runtime.supervisor,
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
            runner, self.http_port = await serve(
                face.app(), config.http_listen, ssl_context, limits
            )
        except OSError as exc:
            await face.close()
            raise ConfigError(f"cannot listen on {config.http_listen}: {exc.strerror}") from None
        scheme = "https" if ssl_context else "http"
        host = config.http_listen.rpartition(":")[0]
        log.info("web page and HTTP/JSON", extra=kv(http=f"{scheme}://{host}:{self.http_port}/"))
        return runner, face

    async def _front_door(
        self,
        runtime: Runtime[GatewayConfig],
        catalog: Catalog,
        authorizer: Authorizer,
        socket: str,
        private: Path,
    ) -> str:
        """Hand grpc_listen (and grpc_tls_listen) to hearth-edge, unless configured (or
        forced) to serve them here.

        Returns the socket the HTTP face should call: the edge's, or this process's own.
        """
        config = runtime.config
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
            config, catalog, authorizer, BACKENDS, socket, edge_socket, tls_files
        )
        edge = Edge(binary, settings, private, runtime.supervisor)
        try:
            runtime.grpc_port = await edge.start()
        except EdgeUnavailable as exc:
            if config.grpc_front == "edge":
                raise ConfigError(f"hearth-edge cannot start: {exc}") from None
            log.warning(
                "hearth-edge cannot start: gRPC is served by Python", extra=kv(error=str(exc))
            )
            return socket
        self.edge = edge
        self.tls_port = edge.tls_port
        runtime.binds_grpc_listen = False
        runtime.on_drain(edge.drain)
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


def spec(gateway: Gateway | None = None) -> ServiceSpec[GatewayConfig]:
    return ServiceSpec(name="gateway", config_cls=GatewayConfig, setup=(gateway or Gateway()).setup)


SPEC = spec()


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
