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

from hearth.gateway.v1 import gateway_pb2_grpc
from hearth_gateway.auth import Authorizer
from hearth_gateway.backends import Backend, BackendPool
from hearth_gateway.catalog import build_catalog
from hearth_gateway.config import GatewayConfig
from hearth_gateway.http import HttpFace, serve
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
        self.pool: BackendPool | None = None
        self.servicer: GatewayServicer | None = None

    async def setup(self, runtime: Runtime[GatewayConfig]) -> None:
        config = runtime.config
        catalog = build_catalog(BACKENDS)
        authorizer = Authorizer(config)
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
        runtime.add_servicer(gateway_pb2_grpc.add_GatewayServicer_to_server, servicer, SERVICE)
        runtime.server.add_generic_rpc_handlers((Forwarder(catalog, pool, authorizer),))
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

        runtime.spawn(monitor(), "backend-checks")

        # The HTTP face talks to the gRPC face over a private unix socket.
        private = Path(tempfile.mkdtemp(prefix="hearth-gateway-"))
        socket = f"unix:{private / 'grpc.sock'}"
        runtime.server.add_insecure_port(socket)
        tls = _tls(config)
        if tls is not None:
            cert, key = tls
            creds = grpc.ssl_server_credentials([(key, cert)])
            if runtime.server.add_secure_port(config.grpc_tls_listen, creds) == 0:
                raise ConfigError(f"cannot listen on {config.grpc_tls_listen}")
        face = HttpFace(
            catalog,
            socket,
            config.cors_origins,
            config.http_timeout_seconds,
            version=runtime.spec.version,
        )
        ssl_context = None
        if tls is not None and config.tls_cert_file and config.tls_key_file:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        try:
            runner, self.http_port = await serve(face.app(), config.http_listen, ssl_context)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {config.http_listen}: {exc.strerror}") from None
        scheme = "https" if ssl_context else "http"
        host = config.http_listen.rpartition(":")[0]
        log.info("web page and HTTP/JSON", extra=kv(http=f"{scheme}://{host}:{self.http_port}/"))

        async def cleanup() -> None:
            await runner.cleanup()
            await face.close()
            await pool.close()
            with contextlib.suppress(OSError):
                shutil.rmtree(private)

        runtime.on_shutdown(cleanup)


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
