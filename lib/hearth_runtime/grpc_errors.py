"""Error mapping, the one job of :class:`ErrorInterceptor`.

- a :class:`HearthError` raised by a handler becomes a rich gRPC status
  (``google.rpc.Status`` with ``ErrorInfo{reason, domain}``);
- any other exception is logged with its traceback and answered UNKNOWN (no internals leak);
- a request whose bytes do not parse is answered INVALID_ARGUMENT (grpc would say UNKNOWN
  before any handler runs, but it is the client's mistake).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from hearth_runtime.errors import HearthError, InvalidArgument
from hearth_runtime.grpc_wrap import Behaviour, WrappingInterceptor, code_of

log = logging.getLogger("hearth.rpc")


class _Undecodable:
    """Stands in for a request whose bytes do not parse (e.g. invalid UTF-8 in a string
    field), so that the handler's wrapper can answer INVALID_ARGUMENT."""

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


class ErrorInterceptor(WrappingInterceptor):
    """Turns :class:`HearthError` into a rich status and anything else into UNKNOWN."""

    def __init__(self, error_domain: str) -> None:
        self.error_domain = error_domain
        super().__init__(_tolerant)

    async def _fail(self, context: grpc.aio.ServicerContext, exc: HearthError) -> None:
        await context.abort_with_status(rpc_status.to_status(exc.to_status(self.error_domain)))

    async def _unhandled(
        self, context: grpc.aio.ServicerContext, exc: Exception, service: str, method: str
    ) -> None:
        if code_of(context) is grpc.StatusCode.OK:  # not an abort by the handler itself
            log.exception("unhandled error in %s/%s", service, method)
            await context.abort(grpc.StatusCode.UNKNOWN, f"internal error: {type(exc).__name__}")

    def _unary(self, inner: Behaviour, kind: str, service: str, method: str) -> Behaviour:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if kind == "unary":
                    _check_decoded(request)
                result = inner(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except HearthError as exc:
                await self._fail(context, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._unhandled(context, exc, service, method)
                raise

        return behavior

    def _stream(self, inner: Behaviour, kind: str, service: str, method: str) -> Behaviour:
        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                if kind == "server_stream":
                    _check_decoded(request)
                result = inner(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:  # a handler that writes with context.write() (e.g. grpc health Watch)
                    await result
            except HearthError as exc:
                await self._fail(context, exc)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                await self._unhandled(context, exc, service, method)
                raise

        return behavior
