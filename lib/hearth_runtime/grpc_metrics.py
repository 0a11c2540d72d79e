"""Standard ``grpc_server_*`` metrics for unary and streaming RPCs (metrics only: error
mapping is :mod:`hearth_runtime.grpc_errors`, trailers :mod:`hearth_runtime.grpc_trailers`).

Names and labels follow go-grpc-prometheus, which Grafana dashboards expect:
``grpc_server_started_total``, ``grpc_server_handled_total{grpc_code}``,
``grpc_server_handling_seconds`` and message counters. py-grpc-prometheus skips
server-streaming RPCs; this interceptor counts them too (handled when the stream ends).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from hearth_runtime.grpc_wrap import Behaviour, WrappingInterceptor, code_of

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


class MetricsInterceptor(WrappingInterceptor):
    """Counts every RPC (started, handled with its code, duration, messages, open streams).

    First in the chain, so it sees the code the inner interceptors (error mapping) set."""

    def __init__(self) -> None:
        super().__init__()

    def _unary(self, inner: Behaviour, kind: str, service: str, method: str) -> Behaviour:
        labels = (kind, service, method)

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            STARTED.labels(*labels).inc()
            if kind == "unary":
                MSG_RECEIVED.labels(*labels).inc()
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                result = inner(request, context)
                if inspect.isawaitable(result):
                    result = await result
                code = code_of(context)
                if code is grpc.StatusCode.OK:
                    MSG_SENT.labels(*labels).inc()
                return result
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                code = _failed(context)
                raise
            finally:
                HANDLED.labels(*labels, code.name).inc()
                HANDLING.labels(*labels).observe(time.perf_counter() - start)

        return behavior

    def _stream(self, inner: Behaviour, kind: str, service: str, method: str) -> Behaviour:
        labels = (kind, service, method)

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            STARTED.labels(*labels).inc()
            MSG_RECEIVED.labels(*labels).inc()
            ACTIVE_STREAMS.labels(service, method).inc()
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                result = inner(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        MSG_SENT.labels(*labels).inc()
                        yield item
                else:  # a handler that writes with context.write() (e.g. grpc health Watch)
                    await result
                code = code_of(context)
            except (asyncio.CancelledError, GeneratorExit):
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                code = _failed(context)
                raise
            finally:
                ACTIVE_STREAMS.labels(service, method).dec()
                HANDLED.labels(*labels, code.name).inc()
                HANDLING.labels(*labels).observe(time.perf_counter() - start)

        return behavior


def _failed(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The code of a call that ended in an exception: the one it was aborted with, if any."""
    code = code_of(context)
    return grpc.StatusCode.UNKNOWN if code is grpc.StatusCode.OK else code


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
