"""Rebuild a gRPC method handler around new behaviours: the one piece of plumbing every
interceptor of :mod:`hearth_runtime` shares (each interceptor has one job)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Behaviour = Callable[[Any, grpc.aio.ServicerContext], Any]
Wrap = Callable[[Behaviour, str], Behaviour]
"""Given the inner behaviour and its kind (unary, server_stream, client_stream,
bidi_stream), the behaviour that replaces it."""

_BUILDERS = (
    ("unary_unary", "unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", "server_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", "client_stream", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", "bidi_stream", grpc.stream_stream_rpc_method_handler),
)


def rewrap(
    handler: Any,
    wrap: Wrap,
    deserializer: Callable[[Callable[[bytes], Any] | None], Callable[[bytes], Any] | None]
    | None = None,
) -> Any:
    """``handler`` with its behaviour replaced by ``wrap(behaviour, kind)`` (and its request
    deserializer by ``deserializer(old)`` if given); ``None`` stays ``None``."""
    if handler is None:
        return None
    for attr, kind, build in _BUILDERS:
        inner = getattr(handler, attr)
        if inner:
            decode = handler.request_deserializer
            return build(
                wrap(inner, kind),
                request_deserializer=deserializer(decode) if deserializer else decode,
                response_serializer=handler.response_serializer,
            )
    return handler


class Rewrapper:
    """:func:`rewrap` once per method: the wrapped handler is kept while the inner one is
    the same object (a servicer's handlers are), so a call costs a lookup, not a rebuild."""

    LIMIT = 1024  # method names seen (a forwarding handler may answer many): then start over

    def __init__(self, wrap: Callable[[str, str], Wrap], deserializer: Any = None) -> None:
        self._wrap = wrap
        self._deserializer = deserializer
        self._cache: dict[str, tuple[Any, Any]] = {}

    def __call__(self, method: str, handler: Any) -> Any:
        hit = self._cache.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        if handler is None:
            return None
        service, name = split_method(method)
        wrapped = rewrap(handler, self._wrap(service, name), self._deserializer)
        if len(self._cache) >= self.LIMIT:
            self._cache.clear()
        self._cache[method] = (handler, wrapped)
        return wrapped


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """An interceptor that rebuilds each method's handler once (:class:`Rewrapper`) around its
    own behaviours: :meth:`_unary` for unary and client-stream calls, :meth:`_stream` for
    server and bidi streams. Each left alone passes the inner behaviour through."""

    def __init__(self, deserializer: Any = None) -> None:
        self._rewrap = Rewrapper(self._wrapper, deserializer)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        return self._rewrap(handler_call_details.method, handler)

    def _wrapper(self, service: str, method: str) -> Wrap:
        def wrap(inner: Behaviour, kind: str) -> Behaviour:
            if kind in ("unary", "client_stream"):
                return self._unary(inner, kind, service, method)
            return self._stream(inner, kind, service, method)

        return wrap

    def _unary(self, inner: Behaviour, kind: str, service: str, method: str) -> Behaviour:
        return inner

    def _stream(self, inner: Behaviour, kind: str, service: str, method: str) -> Behaviour:
        return inner


def split_method(full: str) -> tuple[str, str]:
    """``"/pkg.Service/Method"`` -> ``("pkg.Service", "Method")``."""
    service, _, method = full.lstrip("/").partition("/")
    return service, method


def code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status code the call has now (OK if none was set)."""
    code: Any = context.code()
    if code is None:
        return grpc.StatusCode.OK
    if isinstance(code, grpc.StatusCode):
        return code
    for candidate in grpc.StatusCode:
        if candidate.value[0] == code:
            return candidate
    return grpc.StatusCode.UNKNOWN
