"""The HTTP/JSON face (aiohttp): routes from ``google.api.http``, SSE for Watch, the web page.

Every API call is transcoded and sent to the gateway's gRPC face (hearth-edge, or this
process's own server when gRPC is served from Python) over a private unix socket, so
authentication, rate limits, the audit line and grpc_server_* metrics are the same
for both faces. The ``Authorization`` header (or ``?access_token=``, for EventSource, which
cannot set headers) travels as gRPC ``authorization`` metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import json
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from prometheus_client import Counter, Histogram

from hearth_gateway.auth import normalized_authorization
from hearth_gateway.catalog import Catalog, HttpBinding, Method
from hearth_gateway.http_limits import LimitedRunner, Limits
from hearth_gateway.openapi import openapi_document
from hearth_gateway.proxy import ACTIVE_STREAMS, DETAILS_KEY, EDGE_CHANNEL_OPTIONS
from hearth_gateway.transcode import HTTP_STATUS, BadRequest, build_request, error_body, to_json
from hearth_runtime.logs import kv
from hearth_runtime.supervisor import Supervisor
from hearth_runtime.text import neutral
from hearth_runtime.version import VERSION

log = logging.getLogger("hearth.gateway.http")

HTTP_REQUESTS = Counter(
    "hearth_gateway_http_requests_total",
    "HTTP requests served, by method, route template and status code.",
    ("method", "route", "code"),
)
HTTP_SECONDS = Histogram(
    "hearth_gateway_http_request_duration_seconds",
    "Time to answer an HTTP request (for SSE: until the first event was sent).",
    ("method", "route"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

WEB = Path(str(resources.files("hearth_gateway") / "web"))
STATIC_FILES = frozenset(p.name for p in WEB.iterdir() if p.is_file() and p.name != "index.html")
SSE_HEARTBEAT_SECONDS = 15.0
FRAME_CACHE = 256
FRAME_CACHE_MAX_BYTES = 64 * 1024
CORS_HEADERS = "authorization, content-type"
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"

ROUTE = web.RequestKey("route", str)
STREAMING = web.RequestKey("streaming", bool)
CORS_ORIGIN = web.RequestKey("cors_origin", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Sent with every answer. The page loads only its own script and style files (no inline
# script, no eval), is never framed, and leaks no URL to the links it shows.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_HEARTBEATS = itertools.count(1)


def _json_error(
    code: grpc.StatusCode,
    message: str,
    details: bytes | None = None,
    status: int | None = None,
    field: str | None = None,
) -> web.Response:
    body = error_body(code, message, details)
    if field is not None and not body["details"]:
        body["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        ]
    return web.json_response(body, status=status or HTTP_STATUS[code])


def default_allowed_hosts() -> list[str]:
    """localhost, *.localhost and this machine's names (IP literals are always allowed)."""
    names = {"localhost", "*.localhost"}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    return sorted(names)


def host_allowed(host: str | None, allowed: list[str]) -> bool:
    """Whether the Host header names this gateway: an IP literal or an allowed name.

    A page on another site whose name was re-pointed at this machine (DNS rebinding) sends
    its own name as Host, which is not in the list."""
    if "*" in allowed:
        return True
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):  # [v6]:port
        end = name.find("]")
        if end < 0:
            return False
        literal = name[1:end]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
        return name[end + 1 :] == "" or (_port(name[end + 2 :]) and name[end + 1] == ":")
    base, colon, port = name.rpartition(":")
    if colon and _port(port):
        name = base
    elif colon:
        return False
    name = name.removesuffix(".")
    try:
        ipaddress.IPv4Address(name)
        return True
    except ValueError:
        pass
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if name == pattern[2:] or name.endswith(pattern[1:]):
                return True
        elif name == pattern:
            return True
    return False


def _port(text: str) -> bool:
    return text.isdigit() and text.isascii() and 0 < int(text) < 65536


def _rpc_error(exc: grpc.aio.AioRpcError) -> web.Response:
    details = dict(exc.trailing_metadata() or ()).get(DETAILS_KEY)
    return _json_error(exc.code(), exc.details() or "", details if details else None)


class HttpFace:
    def __init__(
        self,
        catalog: Catalog,
        grpc_target: str,
        cors_origins: list[str],
        timeout: float,
        title: str = "hearth",
        version: str = VERSION,
        *,
        supervisor: Supervisor | None = None,
        allowed_hosts: list[str] | None = None,
        max_body_bytes: int = 256 * 1024,
        body_timeout: float = 10.0,
    ) -> None:
        self.catalog = catalog
        self.routes = catalog.http_routes()
        self.grpc_target = grpc_target
        self.cors_origins = cors_origins
        self.timeout = timeout
        self.openapi = openapi_document(catalog, title, version)
        self._channel: grpc.aio.Channel | None = None
        self._frames: dict[tuple[str, bytes], bytes] = {}
        self.supervisor = supervisor or Supervisor()
        self.allowed_hosts = allowed_hosts or default_allowed_hosts()
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self._refused_hosts: set[str] = set()

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.grpc_target, EDGE_CHANNEL_OPTIONS)
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._metrics, self._host, self._cors],
            client_max_size=self.max_body_bytes,
        )
        app.on_response_prepare.append(self._secure)
        app.router.add_get("/", self._index)
        # Only the page's own files: a made-up name (too long, "..", encoded) is a plain 404.
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_route("*", "/v1/{tail:.*}", self._api)
        return app

    # -- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def _metrics(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        route = "other"
        code = 500
        try:
            response = await handler(request)
            code = response.status
            resource = request.match_info.route.resource
            route = request.get(ROUTE) or (resource.canonical if resource else "unmatched")
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            HTTP_REQUESTS.labels(request.method, route, str(code)).inc()
            if not request.get(STREAMING):
                HTTP_SECONDS.labels(request.method, route).observe(time.perf_counter() - start)

    @staticmethod
    async def _secure(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    @web.middleware
    async def _host(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not host_allowed(host, self.allowed_hosts):
            request[ROUTE] = "host-refused"
            shown = neutral(host or "", 100)
            if len(self._refused_hosts) < 100 and shown not in self._refused_hosts:
                # Once per name: an owner reaching the page by a name not yet allowed sees why.
                self._refused_hosts.add(shown)
                log.warning(
                    "HTTP request for a host name that is not allowed (DNS rebinding guard)",
                    extra=kv(host=shown, setting="allowed_hosts", allowed=self.allowed_hosts),
                )
            return _json_error(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this gateway does not answer for host {shown!r}: add it to allowed_hosts "
                "(HEARTH_GATEWAY_ALLOWED_HOSTS)",
                status=403,
                field="Host",
            )
        return await handler(request)

    def _allowed_origin(self, origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in self.cors_origins:
            return "*"
        return origin if origin in self.cors_origins else None

    @web.middleware
    async def _cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = self._allowed_origin(request.headers.get("Origin"))
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            request[ROUTE] = "preflight"
            if origin is None:
                return web.Response(status=403, text="origin not allowed")
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": CORS_METHODS,
                    "Access-Control-Allow-Headers": CORS_HEADERS,
                    "Access-Control-Max-Age": "600",
                    "Vary": "Origin",
                },
            )
        if origin is not None:
            request[CORS_ORIGIN] = origin
        response = await handler(request)
        if origin is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    # -- static ------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.FileResponse(WEB / name, headers={"Cache-Control": "no-cache"})

    async def _openapi(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.openapi)

    # -- the API -----------------------------------------------------------------------------

    def _route(self, request: web.Request) -> tuple[HttpBinding, Method, dict[str, str]]:
        allowed: list[str] = []
        for binding, method in self.routes:
            params = binding.match(request.path)
            if params is None:
                continue
            allowed.append(binding.verb)
            if binding.verb == request.method:
                return binding, method, params
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, sorted(set(allowed)))
        raise LookupError(request.path)

    def _metadata(self, request: web.Request) -> list[tuple[str, str]]:
        metadata = [("x-forwarded-for", request.remote or "")]
        header = request.headers.get("Authorization")
        if header is None and "access_token" in request.query:
            header = "Bearer " + request.query["access_token"]
        # The credential goes on as parsed by the one grammar of both front doors, so a
        # value gRPC metadata cannot carry (non-ASCII, control characters) is refused by the
        # gRPC face like every other malformed one.
        value = normalized_authorization(header)
        if value is not None:
            metadata.append(("authorization", value))
        return metadata

    async def _api(self, request: web.Request) -> web.StreamResponse:
        try:
            binding, method, params = self._route(request)
        except LookupError:
            request[ROUTE] = "unmatched"  # never the raw path: scanners would blow up the labels
            return _json_error(grpc.StatusCode.NOT_FOUND, f"no API route for {request.path}")
        except web.HTTPMethodNotAllowed as exc:
            # 405 (HTTP's word for it; the body's code stays gRPC's UNIMPLEMENTED), naming
            # the methods that the path does take.
            request[ROUTE] = "method-not-allowed"
            response = _json_error(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{request.method} is not supported on {request.path}",
                status=405,
            )
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
            return response
        request[ROUTE] = binding.template
        try:
            timeout = self._timeout(request)
        except ValueError:
            return _json_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                "timeout: give seconds, e.g. ?timeout=2.5",
                field="timeout",
            )
        try:
            # A body that trickles in would hold the connection: it has the head's deadline.
            async with asyncio.timeout(self.body_timeout):
                body = await request.read()
        except TimeoutError:
            response = _json_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"body: not received within {self.body_timeout:g} s",
                status=408,
                field="body",
            )
            response.force_close()
            return response
        except web.HTTPRequestEntityTooLarge:
            return _json_error(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"body: larger than {self.max_body_bytes} bytes",
                status=413,
                field="body",
            )
        try:
            message = build_request(method, binding, params, request.query.items(), body)
        except BadRequest as exc:
            return _json_error(grpc.StatusCode.INVALID_ARGUMENT, str(exc), field=exc.field)
        metadata = self._metadata(request)
        if method.server_streaming:
            request[STREAMING] = True
            return await self._sse(request, method, message, metadata)
        call = self.channel.unary_unary(
            method.path,
            request_serializer=method.request_cls.SerializeToString,
            response_deserializer=method.response_cls.FromString,
        )
        try:
            answer = await call(message, timeout=timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            return _rpc_error(exc)
        return web.json_response(to_json(answer))

    def _timeout(self, request: web.Request) -> float:
        """The call's deadline: ``?timeout=SECONDS`` (``2.5`` or ``2.5s``), at most the default."""
        given = request.query.get("timeout")
        if given is None:
            return self.timeout
        seconds = float(given.removesuffix("s"))
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(given)
        return min(seconds, self.timeout)

    async def _sse(
        self, request: web.Request, method: Method, message: Any, metadata: list[tuple[str, str]]
    ) -> web.StreamResponse:
        # Raw bytes: many watchers get the same event, so its JSON is made once (see _event).
        call: Any = self.channel.unary_stream(
            method.path, request_serializer=method.request_cls.SerializeToString
        )(message, metadata=metadata)
        gauge = ACTIVE_STREAMS.labels("sse", method.full_name)
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as exc:
            return _rpc_error(exc)  # before any event: a plain HTTP error (401, 503, ...)
        except BaseException:
            call.cancel()  # the browser left before the first event
            raise
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        if request.get(CORS_ORIGIN):
            response.headers["Access-Control-Allow-Origin"] = request[CORS_ORIGIN]
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        gauge.inc()
        # One heartbeat task per stream, owned by the supervisor and cancelled with it.
        heartbeat = f"sse-heartbeat-{next(_HEARTBEATS)}"
        self.supervisor.spawn(
            lambda: self._heartbeat(response), heartbeat, family="sse-heartbeat", restart=False
        )
        try:
            item: Any = first
            while item is not grpc.aio.EOF:
                await response.write(self._event(method, item))
                item = await call.read()
            await response.write(b"event: end\ndata: {}\n\n")
        except grpc.aio.AioRpcError as exc:
            details = dict(exc.trailing_metadata() or ()).get(DETAILS_KEY)
            body = error_body(exc.code(), exc.details() or "", details if details else None)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await response.write(f"event: error\ndata: {json.dumps(body)}\n\n".encode())
        except (ConnectionError, RuntimeError):
            pass  # the browser went away
        finally:
            self.supervisor.cancel(heartbeat)
            call.cancel()
            gauge.dec()
        return response

    def _event(self, method: Method, raw: bytes) -> bytes:
        """The SSE frame of one streamed message, shared by every watcher of the same event."""
        key = (method.path, raw)
        frame = self._frames.get(key)
        if frame is None:
            data = json.dumps(to_json(method.response_cls.FromString(raw)), separators=(",", ":"))
            frame = f"data: {data}\n\n".encode()
            if len(raw) <= FRAME_CACHE_MAX_BYTES:
                if len(self._frames) >= FRAME_CACHE:
                    self._frames.pop(next(iter(self._frames)))  # the oldest (insertion order)
                self._frames[key] = frame
        return frame

    async def _heartbeat(self, response: web.StreamResponse) -> None:
        # Comments keep proxies from closing an idle stream and reveal a vanished client.
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                await asyncio.sleep(SSE_HEARTBEAT_SECONDS)
                await response.write(b": ping\n\n")


async def serve(
    app: web.Application, address: str, ssl_context: Any = None, limits: Limits | None = None
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (port 0 picks one); return the runner and the port."""
    host, _, port = address.rpartition(":")
    runner = LimitedRunner(app, limits or Limits(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]") or None, int(port), ssl_context=ssl_context)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else int(port)
    return runner, bound
