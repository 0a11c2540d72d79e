"""Trailers on every answer, the one job of :class:`TrailersInterceptor`.

``hearth-service`` and ``hearth-version`` go with every unary answer unless the handler sets
its own (the gateway reads them from its health checks to report each backend's version).
"""

from __future__ import annotations

import inspect
from typing import Any

import grpc

from hearth_runtime.grpc_wrap import Behaviour, WrappingInterceptor


class TrailersInterceptor(WrappingInterceptor):
    def __init__(self, trailers: tuple[tuple[str, str], ...]) -> None:
        self.trailers = trailers
        super().__init__()

    # A stream's trailers are its handler's to set: _stream passes it through.
    def _unary(self, inner: Behaviour, kind: str, service: str, method: str) -> Behaviour:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            context.set_trailing_metadata(self.trailers)
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result

        return behavior
