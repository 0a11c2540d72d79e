"""Raw clients for the gateway's tests: HTTP/1.1 over a socket, gRPC over curl's HTTP/2.

grpc-python and aiohttp refuse to send some of what a hostile client sends (a tab or a
non-ASCII byte in a header, a malformed request line); these send the bytes as given.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from google.rpc import error_details_pb2, status_pb2


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_http(
    port: int,
    head: bytes,
    body: bytes = b"",
    *,
    host: str = "127.0.0.1",
    within: float = 10,
    cafile: Path | None = None,
) -> HttpAnswer:
    """Send ``head`` (request line and headers, without the blank line) and ``body``; the
    connection is closed after the answer (``Connection: close`` is added). With ``cafile``
    over TLS, to a server whose certificate names localhost."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname="localhost" if context else None
    )
    try:
        writer.write(head.rstrip(b"\r\n") + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), within)
    finally:
        writer.close()
    return parse_http(raw)


def parse_http(raw: bytes) -> HttpAnswer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines or not lines[0].startswith(b"HTTP/1."):
        raise AssertionError(f"not an HTTP answer: {raw[:200]!r}")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return HttpAnswer(status, headers, body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return out


@dataclass
class GrpcAnswer:
    code: int
    message: str
    reason: str


def decode_status(code: int, message: str, details_b64: str | None) -> GrpcAnswer:
    reason = ""
    if details_b64:
        padded = details_b64 + "=" * (-len(details_b64) % 4)
        status = status_pb2.Status.FromString(base64.b64decode(padded))
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
    return GrpcAnswer(code, message, reason)


async def curl_grpc(
    url: str, path: str, request: bytes, headers: list[bytes], cacert: Path | None = None
) -> GrpcAnswer:
    """One unary gRPC call sent by curl (HTTP/2), headers exactly as given."""
    framed = b"\0" + len(request).to_bytes(4, "big") + request
    args = ["curl", "-sS", "-D", "-", "-o", "/dev/null", "--data-binary", "@-", "--max-time", "10"]
    args += ["--http2-prior-knowledge"] if url.startswith("http:") else ["--http2"]
    if cacert is not None:
        args += ["--cacert", str(cacert)]
    command: list[str | bytes] = [*args]
    for header in [b"content-type: application/grpc", b"te: trailers", *headers]:
        command += ["-H", header]
    command.append(url + path)
    process = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate(framed)
    fields: dict[str, str] = {}
    for line in out.decode("latin-1").splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields[key.strip().lower()] = value.strip()
    if "grpc-status" not in fields:
        raise AssertionError(f"no gRPC status from curl: {out!r} {err!r}")
    return decode_status(
        int(fields["grpc-status"]),
        unquote(fields.get("grpc-message", "")),
        fields.get("grpc-status-details-bin"),
    )
