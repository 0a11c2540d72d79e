"""Limits of the HTTP face's connections, below what an aiohttp handler sees.

aiohttp reads a request's head with no deadline of its own (only its keep-alive timer, an
hour by default), takes any number of connections, and answers a request line or header
that is too long with a plain-text 400. Here:

- the head (request line and headers) must arrive within ``header_timeout`` seconds of its
  first byte, else the connection is closed (a slow client cannot hold it);
- an idle keep-alive connection is closed after ``idle_timeout`` seconds;
- at most ``max_connections`` are open; the next one is answered 503 and closed;
- a request line longer than ``max_url_bytes`` is 414, a header longer than
  ``max_header_bytes`` (or too many of them) 431, any other malformed head 400, each with
  the gRPC-JSON error body ``{code, message, details}`` of every other error.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
UNAVAILABLE = 14


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_connections: int = 1024
    max_url_bytes: int = 8190
    max_header_bytes: int = 8190
    max_headers: int = 100


def error_response(status: int, code: int, message: str, field: str) -> web.Response:
    """A gRPC-JSON error (``google.rpc.Status`` with a BadRequest naming ``field``)."""
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": message}],
        }
    ]
    body = json.dumps({"code": code, "message": message, "details": details})
    return web.Response(status=status, text=body, content_type="application/json")


_METHOD_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_")


def _is_request_line(line: object) -> bool:
    """Whether a too-long line is the request line or its URL, not a header: aiohttp's C
    parser reports the URL ("/v1/..."), its Python one the whole line ("GET /v1/...")."""
    if isinstance(line, str):
        line = line.encode(errors="replace")
    if not isinstance(line, bytes):
        return False
    if line.startswith((b"/", b"*", b"http://", b"https://")):
        return True
    method, space, _ = line.partition(b" ")
    return bool(space) and bool(method) and all(c in _METHOD_CHARS for c in method)


class LimitedHandler(RequestHandler):
    """aiohttp's connection handler with a deadline on the request head."""

    __slots__ = ("_head_timer", "_limits")

    def __init__(self, manager: Server, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=limits.idle_timeout, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None

    def _between_requests(self) -> bool:
        return not self._request_in_progress and not self._messages

    def data_received(self, data: bytes) -> None:
        if data and self._head_timer is None and self._between_requests():
            # The first byte of a head: all of it must follow within header_timeout.
            self._head_timer = self._loop.call_later(
                self._limits.header_timeout, self._head_too_slow
            )
        super().data_received(data)
        if self._head_timer is not None and not self._between_requests():
            self._head_timer.cancel()  # the head is complete
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._between_requests() and self.transport is not None:
            self.force_close()  # still no complete head: the client is too slow

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            line = exc.args[0] if exc.args else b""
            limit = exc.args[1] if len(exc.args) > 1 else None
            limits = self._limits
            if limits.max_url_bytes != limits.max_header_bytes and limit in (
                limits.max_url_bytes,
                limits.max_header_bytes,
            ):
                url = limit == limits.max_url_bytes
            else:
                url = _is_request_line(line)
            if url:
                response = error_response(414, INVALID_ARGUMENT, "the URL is too long", "url")
            else:
                response = error_response(
                    431, INVALID_ARGUMENT, "a request header is too long", "headers"
                )
        elif isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower():
            response = error_response(431, INVALID_ARGUMENT, "too many request headers", "headers")
        elif isinstance(exc, BadHttpMessage):
            text = str(exc.message if hasattr(exc, "message") else exc)[:200]
            response = error_response(
                400, INVALID_ARGUMENT, f"malformed HTTP request: {text}", "request"
            )
        else:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        response.force_close()
        return response


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s"
)


class _Busy(asyncio.Protocol):
    """A connection beyond max_connections: answered 503 at once and closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = json.dumps(
            {"code": UNAVAILABLE, "message": "too many connections, retry later", "details": []}
        ).encode()
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY % (len(body), body))
        transport.close()


class LimitedServer(Server):
    limits: Limits = Limits()

    def __call__(self) -> Any:
        if len(self._connections) >= self.limits.max_connections:
            return _Busy()
        return LimitedHandler(self, loop=self._loop, limits=self.limits, **self._kwargs)


class LimitedRunner(web.AppRunner):
    """An AppRunner whose server applies ``limits``."""

    def __init__(self, app: web.Application, limits: Limits, **kwargs: Any) -> None:
        super().__init__(
            app,
            max_line_size=limits.max_url_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            # After an answer sent before the whole body came (413, 408), the rest is read
            # and dropped for this long, not aiohttp's 10 s.
            lingering_time=2.0,
            **kwargs,
        )
        self._limits = limits

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = LimitedServer  # same state; only __call__ differs
        server.limits = self._limits  # type: ignore[attr-defined]
        return server
