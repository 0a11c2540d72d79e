"""The gRPC front door: every backend method forwarded as raw bytes by one generic handler.

Nothing is decoded on the way through (except, for calls that change state, the request once
more for the audit line). The caller's deadline, cancellation and metadata go to the backend;
the backend's status, message, details and trailers come back unchanged. A backend that
cannot be reached answers UNAVAILABLE with a message naming it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Gauge

from hearth_gateway.auth import Authorizer, Principal, bearer
from hearth_gateway.backends import Backend, BackendPool
from hearth_gateway.catalog import Catalog, Method
from hearth_runtime.errors import HearthError
from hearth_runtime.logs import kv

log = logging.getLogger("hearth.gateway")
audit_log = logging.getLogger("hearth.audit")

ACTIVE_STREAMS = Gauge(
    "hearth_gateway_active_streams",
    "Watch streams open through the gateway, by face (grpc or sse) and method.",
    ("face", "method"),
)

DETAILS_KEY = "grpc-status-details-bin"
EDGE_CHANNEL_OPTIONS = [
    # gRPC's default :authority for a unix socket is its path, which HTTP/2 servers other than
    # grpc's own (hearth-edge's) refuse as malformed.
    ("grpc.default_authority", "localhost"),
    # Back quickly after the edge was restarted (gRPC's default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
# Request metadata that belongs to this hop, not to the backend call.
_HOP_KEYS = {"authorization", "user-agent", "content-type", "te", "host", "x-forwarded-for"}
# Headers only a front door sets (x-hearth-principal names the authorized caller to the
# backend): whatever a caller sent under this prefix is dropped, never forwarded.
INTERNAL_PREFIX = "x-hearth-"
# The HTTP face reaches the gRPC face over this process's private unix socket; only there
# is an x-forwarded-for header trusted.
_TRUSTED_PEER_PREFIX = "unix:"


def token_of(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return bearer(str(value))
    return None


def client_address(context: grpc.aio.ServicerContext) -> str:
    peer = context.peer() or ""
    if peer.startswith(_TRUSTED_PEER_PREFIX):
        for key, value in context.invocation_metadata() or ():
            if key == "x-forwarded-for":
                return str(value)
    return peer


def forwarded_metadata(
    context: grpc.aio.ServicerContext, principal: Principal
) -> list[tuple[str, str | bytes]]:
    out = caller_metadata(context)
    out.append(("x-forwarded-for", client_address(context)))
    out.append(("x-hearth-principal", principal.name))
    return out


def caller_metadata(context: grpc.aio.ServicerContext) -> list[tuple[str, str | bytes]]:
    """The caller's metadata that may go on: not this hop's, not one only we may set."""
    return [
        (key, value)
        for key, value in context.invocation_metadata() or ()
        if key not in _HOP_KEYS and not key.startswith(("grpc-", ":", INTERNAL_PREFIX))
    ]


def passable_metadata(
    metadata: Iterable[tuple[str, Any]] | None,
) -> tuple[tuple[str, Any], ...]:
    return tuple((k, v) for k, v in metadata or () if not k.startswith("grpc-") or k == DETAILS_KEY)


async def _pass_trailers(call: Any, context: grpc.aio.ServicerContext) -> None:
    """Hand a finished backend call's passable trailers on to the caller."""
    trailers = passable_metadata(await call.trailing_metadata())
    if trailers:
        context.set_trailing_metadata(trailers)


async def _pass_initial(call: Any, context: grpc.aio.ServicerContext) -> None:
    """The backend's response headers, if it sent any of its own, go to the caller."""
    headers = passable_metadata(await call.initial_metadata())
    if headers:
        await context.send_initial_metadata(headers)


def deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > 10**8:  # no deadline set by the caller
        return None
    return max(0.0, float(remaining))


def resource_paths(method: Method) -> list[str]:
    """The request fields naming what a call is about: path parameters, else *_id fields."""
    params = [p for b in method.http for p in b.params.values()]
    fields = method.request_cls.DESCRIPTOR.fields
    return params or [f.name for f in fields if f.name.endswith("_id")]


def resource_of(method: Method, request: bytes) -> str:
    """The resource a call is about, for the audit line."""
    try:
        message = method.request_cls.FromString(request)
    except Exception:
        return ""
    found = []
    for path in resource_paths(method):
        value: Any = message
        for part in path.split("."):
            value = getattr(value, part, "")
        if value:
            found.append(str(value))
    return ",".join(found)


def backend_unavailable(backend: Backend, details: str) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(
        reason="BACKEND_UNAVAILABLE",
        domain="gateway.hearth",
        metadata={"backend": backend.name, "address": backend.address},
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    status = status_pb2.Status(
        code=code_pb2.UNAVAILABLE,
        message=backend.unavailable_message(details),
        details=[packed],
    )
    return rpc_status.to_status(status)


class Forwarder(grpc.GenericRpcHandler):
    """Serves every catalogued backend method; the gateway's own service is registered apart."""

    def __init__(self, catalog: Catalog, pool: BackendPool, authorizer: Authorizer) -> None:
        self.catalog = catalog
        self.pool = pool
        self.authorizer = authorizer
        # Built once: looking a handler up is all a call costs before it is forwarded.
        self._handlers = {
            path: self._handler(method)
            for path, method in catalog.methods.items()
            if method.backend in pool.backends
        }

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)

    def _handler(self, method: Method) -> grpc.RpcMethodHandler:
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(self._stream(method))
        return grpc.unary_unary_rpc_method_handler(self._unary(method))

    def _admit(self, method: Method, context: grpc.aio.ServicerContext) -> Principal:
        try:
            return self.authorizer.authorize(method, token_of(context.invocation_metadata()))
        except HearthError as exc:
            if method.mutating:  # a refused change is worth a line too
                audit_log.warning(
                    "audit refused",
                    extra=kv(
                        method=method.full_name,
                        client=client_address(context),
                        code=exc.code.name,
                        reason=exc.reason,
                    ),
                )
            raise

    async def _fail(
        self, backend: Backend, exc: grpc.aio.AioRpcError, context: grpc.aio.ServicerContext
    ) -> None:
        trailers = passable_metadata(exc.trailing_metadata())
        if exc.code() is grpc.StatusCode.UNAVAILABLE and not any(
            k == DETAILS_KEY for k, _ in trailers
        ):
            # No rich status: the channel failed, not the service. Say which backend.
            await context.abort_with_status(backend_unavailable(backend, exc.details() or ""))
        await context.abort(exc.code(), exc.details() or "", trailing_metadata=trailers)

    def _audit(
        self,
        method: Method,
        principal: Principal,
        request: bytes,
        context: grpc.aio.ServicerContext,
        code: str,
        started: float,
    ) -> None:
        if not method.mutating:
            return
        audit_log.info(
            "audit",
            extra=kv(
                who=principal.name,
                role=principal.role,
                method=method.full_name,
                resource=resource_of(method, request),
                client=client_address(context),
                code=code,
                seconds=f"{time.perf_counter() - started:.3f}",
            ),
        )

    def _unary(self, method: Method) -> Any:
        backend = self.pool.backends[method.backend]
        call_backend: Any = backend.channel.unary_unary(method.path)

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            principal = self._admit(method, context)
            started = time.perf_counter()
            code = "OK"
            try:
                call = call_backend(
                    request,
                    timeout=deadline(context),
                    metadata=forwarded_metadata(context, principal),
                )
                response: bytes = await call
                await _pass_initial(call, context)
                await _pass_trailers(call, context)
                return response
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                await self._fail(backend, exc, context)
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"  # the caller went away; its cancellation reached the backend
                raise
            finally:
                self._audit(method, principal, request, context, code, started)

        return forward

    def _stream(self, method: Method) -> Any:
        backend = self.pool.backends[method.backend]
        call_backend: Any = backend.channel.unary_stream(method.path)

        async def forward(
            request: bytes, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            principal = self._admit(method, context)
            started = time.perf_counter()
            call = call_backend(
                request, timeout=deadline(context), metadata=forwarded_metadata(context, principal)
            )
            code = "OK"
            gauge = ACTIVE_STREAMS.labels("grpc", method.full_name)
            gauge.inc()
            try:
                await _pass_initial(call, context)
                async for message in call:
                    yield message
                await _pass_trailers(call, context)
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                await self._fail(backend, exc, context)
                raise
            except BaseException:
                code = "CANCELLED"
                raise
            finally:
                call.cancel()  # the caller went away (or we are done): stop the backend's stream
                gauge.dec()
                self._audit(method, principal, request, context, code, started)

        return forward
