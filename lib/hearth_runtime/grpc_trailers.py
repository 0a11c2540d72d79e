"""Trailers on every answer, the one job of :class:`TrailersInterceptor`.

``hearth-service`` and ``hearth-version`` go with every unary answer unless the handler sets
its own (the gateway reads them from its health checks to report each backend's version).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from hearth_runtime.grpc_wrap import Behaviour, Rewrapper


class TrailersInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, trailers: tuple[tuple[str, str], ...]) -> None:
        self.trailers = trailers
        self._rewrap = Rewrapper(lambda service, method: self._wrap)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        return self._rewrap(handler_call_details.method, handler)

    def _wrap(self, inner: Behaviour, kind: str) -> Behaviour:
        if kind not in ("unary", "client_stream"):
            return inner  # a stream's trailers are its handler's to set

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            context.set_trailing_metadata(self.trailers)
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result

        return behavior
