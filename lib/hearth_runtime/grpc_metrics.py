"""Standard ``grpc_server_*`` metrics for unary and streaming RPCs, and error mapping.

Names and labels follow go-grpc-prometheus, which Grafana dashboards expect:
``grpc_server_started_total``, ``grpc_server_handled_total{grpc_code}``,
``grpc_server_handling_seconds`` and message counters. py-grpc-prometheus skips
server-streaming RPCs; this interceptor counts them too (handled when the stream ends).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status
from prometheus_client import Counter, Gauge, Histogram

from hearth_runtime.errors import HearthError, InvalidArgument

log = logging.getLogger("hearth.rpc")

_LABELS = ("grpc_type", "grpc_service", "grpc_method")

STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS)
HANDLED = Counter(
    "grpc_server_handled_total", "RPCs completed on the server.", (*_LABELS, "grpc_code")
)
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its end (for streams: the whole stream).",
    _LABELS,
    buckets=(
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
    ),
)
MSG_RECEIVED = Counter(
    "grpc_server_msg_received_total", "Messages received by the server.", _LABELS
)
MSG_SENT = Counter("grpc_server_msg_sent_total", "Messages sent by the server.", _LABELS)
ACTIVE_STREAMS = Gauge(
    "grpc_server_active_streams",
    "Server-streaming RPCs in progress.",
    ("grpc_service", "grpc_method"),
)


def _code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code: Any = context.code()
    if code is None:
        return grpc.StatusCode.OK
    if isinstance(code, grpc.StatusCode):
        return code
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return candidate
    return grpc.StatusCode.UNKNOWN


class _Undecodable:
    """Stands in for a request whose bytes do not parse (e.g. invalid UTF-8 in a string
    field): grpc would answer such a request UNKNOWN before any handler runs, but it is the
    client's mistake, so the handler's wrapper answers INVALID_ARGUMENT instead."""

    def __init__(self, error: Exception) -> None:
        self.error = f"{type(error).__name__}: {error}"


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, UnicodeDecodeError, ...
            return _Undecodable(exc)

    return decode


def _check_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument("request", f"the request message cannot be decoded ({request.error})")


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC and turns :class:`HearthError` into a rich gRPC status."""

    def __init__(self, error_domain: str, trailers: tuple[tuple[str, str], ...] = ()) -> None:
        self.error_domain = error_domain
        # Sent with every unary answer unless the handler sets its own (e.g. hearth-version,
        # which the gateway reads from its health checks to report each backend's version).
        self.trailers = trailers

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        full = handler_call_details.method  # "/pkg.Service/Method"
        service, _, method = full.lstrip("/").partition("/")
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, "unary", service, method),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, "server_stream", service, method),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, "client_stream", service, method),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, "bidi_stream", service, method),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _fail(self, context: grpc.aio.ServicerContext, exc: HearthError) -> None:
        await context.abort_with_status(rpc_status.to_status(exc.to_status(self.error_domain)))

    def _unary(self, inner: Any, kind: str, service: str, method: str) -> Any:
        labels = (kind, service, method)

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            STARTED.labels(*labels).inc()
            if kind == "unary":
                MSG_RECEIVED.labels(*labels).inc()
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            if self.trailers:
                context.set_trailing_metadata(self.trailers)
            try:
                if kind == "unary":
                    _check_decoded(request)
                result = inner(request, context)
                if inspect.isawaitable(result):
                    result = await result
                code = _code_of(context)
                if code is grpc.StatusCode.OK:
                    MSG_SENT.labels(*labels).inc()
                return result
            except HearthError as exc:
                code = exc.code
                await self._fail(context, exc)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                code = _code_of(context)
                if code is grpc.StatusCode.OK:
                    code = grpc.StatusCode.UNKNOWN
                    log.exception("unhandled error in %s/%s", service, method)
                    await context.abort(code, f"internal error: {type(exc).__name__}")
                raise
            finally:
                HANDLED.labels(*labels, code.name).inc()
                HANDLING.labels(*labels).observe(time.perf_counter() - start)

        return behavior

    def _stream(self, inner: Any, kind: str, service: str, method: str) -> Any:
        labels = (kind, service, method)

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            STARTED.labels(*labels).inc()
            MSG_RECEIVED.labels(*labels).inc()
            ACTIVE_STREAMS.labels(service, method).inc()
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                if kind == "server_stream":
                    _check_decoded(request)
                result = inner(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        MSG_SENT.labels(*labels).inc()
                        yield item
                else:  # a handler that writes with context.write() (e.g. grpc health Watch)
                    await result
                code = _code_of(context)
            except HearthError as exc:
                code = exc.code
                await self._fail(context, exc)
            except (asyncio.CancelledError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                code = _code_of(context)
                if code is grpc.StatusCode.OK:
                    code = grpc.StatusCode.UNKNOWN
                    log.exception("unhandled error in %s/%s", service, method)
                    await context.abort(code, f"internal error: {type(exc).__name__}")
                raise
            finally:
                ACTIVE_STREAMS.labels(service, method).dec()
                HANDLED.labels(*labels, code.name).inc()
                HANDLING.labels(*labels).observe(time.perf_counter() - start)

        return behavior


def record_started(kind: str, service: str, method: str) -> None:
    """Count an RPC that another process (the gateway's edge) began serving for this one."""
    STARTED.labels(kind, service, method).inc()
    if kind == "server_stream":
        ACTIVE_STREAMS.labels(service, method).inc()


def record_handled(
    kind: str,
    service: str,
    method: str,
    code: str,
    seconds: float,
    received: int,
    sent: int,
    *,
    started_here: bool,
) -> None:
    """Count an RPC another process served; ``started_here``: no record_started came first."""
    labels = (kind, service, method)
    if started_here:
        STARTED.labels(*labels).inc()
    elif kind == "server_stream":
        ACTIVE_STREAMS.labels(service, method).dec()
    if received:
        MSG_RECEIVED.labels(*labels).inc(received)
    if sent:
        MSG_SENT.labels(*labels).inc(sent)
    HANDLED.labels(*labels, code).inc()
    HANDLING.labels(*labels).observe(seconds)
