"""hearth-edge, the Rust front door on the public gRPC ports, run and fed by this process.

Why: every hop through grpc-python costs about as much as the call it forwards (see
bench/bench_grpc_hop.py), so a Python front door at least doubles a call's latency. The edge
serves the gRPC port and, with TLS configured, the gRPC-with-TLS port too (one door: the
same rules and the same rate-limit buckets for both). It forwards wake, audio and ci calls
as HTTP/2 frames and passes everything else (the Gateway service, health, reflection) to
this process's gRPC server over its private unix socket.

One rule set: who may call a method and how often is the method's
``hearth.auth.v1.policy`` option. This process reads it from the descriptors (with the rest
of the catalog), validates the user's settings (tokens, rate_limits overrides) and hands
the edge the result as a typed ``hearth.gateway.internal.v1.EdgeConfig``: the edge applies
rules, it never derives them. (The edge could read the descriptor set itself, but it would
then need the settings anyway, a descriptor parser and its own copy of the override and
validation rules; one derivation in one place is what keeps the two doors equal.)
tests/test_gateway_auth_table.py checks both doors give the same answer for every method
and role. The edge reports back on stdout in ``EdgeReport`` messages: its ports, each call
it served (turned into the same ``grpc_server_*`` metrics the Python front door counts)
and its log lines (the audit lines among them). If the edge dies it is started again on
the same ports.

The edge stays optional (``grpc_front: auto`` falls back to Python when it is not installed
or cannot start), and is the default wherever it is built. Measured with
bench/bench_gateway.py on 2026-11-30 (2 shared cores, load ~11, so noisy; each front door
in turn): GetHost p50 through the gateway / direct 1.84x with the edge, 2.36x with Python;
500 gRPC Watch subscribers, event delivery p50 278 ms (edge) vs 1331 ms (Python), SSE p50
697 vs 1405 ms. The edge is worth having, but not worth requiring: a gateway installed
without cargo (pip, a product image built without Rust) still needs a front door, and the
Python one costs little to keep honest because it is no second rule set, only a second
enforcer of the same one (the policies from the descriptors, the overrides and tokens
validated here), held to the edge's answers by the descriptor-driven auth table.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from hearth.gateway.internal.v1 import edge_pb2
from hearth_gateway.auth import Authorizer
from hearth_gateway.catalog import Catalog, Method
from hearth_gateway.config import GatewayConfig
from hearth_gateway.policy import ROLE_VALUES
from hearth_gateway.proxy import ACTIVE_STREAMS, resource_paths
from hearth_runtime import ConfigError
from hearth_runtime.grpc_metrics import record_handled, record_started
from hearth_runtime.logs import kv
from hearth_runtime.supervisor import Supervisor

log = logging.getLogger("hearth.gateway.edge")

BINARY = "hearth-edge"
RESTART_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
SUPERVISOR_TASK = "edge-supervisor"
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_LEVELS = {
    edge_pb2.LOG_LEVEL_INFO: logging.INFO,
    edge_pb2.LOG_LEVEL_WARNING: logging.WARNING,
    edge_pb2.LOG_LEVEL_ERROR: logging.ERROR,
}


class EdgeUnavailable(Exception):
    """The edge binary is missing or would not start."""


def find_binary(configured: str) -> str | None:
    """``configured`` as a path, else on PATH, else beside this Python (the virtualenv)."""
    if os.sep in configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which(configured)
    if found:
        return found
    beside = Path(sys.executable).parent / configured
    return str(beside) if os.access(beside, os.X_OK) else None


def _field_numbers(message: Any, path: str) -> list[int] | None:
    numbers = []
    current: Any = message
    for part in path.split("."):
        if current is None or part not in current.fields_by_name:
            return None
        found = current.fields_by_name[part]
        numbers.append(found.number)
        current = found.message_type
    return numbers


def resource_fields(method: Method) -> list[list[int]]:
    """Field-number paths of ``proxy.resource_paths``, for the edge's audit line."""
    message = method.request_cls.DESCRIPTOR
    out = []
    for path in resource_paths(method):
        numbers = _field_numbers(message, path)
        if numbers is not None:
            out.append(numbers)
    return out


def edge_config(
    config: GatewayConfig,
    catalog: Catalog,
    authorizer: Authorizer,
    backends: Iterable[str],
    fallback: str,
    private_listen: str,
    tls: tuple[Path, Path] | None = None,
) -> edge_pb2.EdgeConfig:
    """The edge's configuration: the validated settings, and each backend method's policy
    as the Python front door applies it (role from the descriptor, rate with overrides)."""
    addresses = config.backend_addresses()
    wanted = set(backends)
    settings = edge_pb2.EdgeConfig(
        listen=config.grpc_listen,
        private_listen=private_listen,
        fallback=fallback,
        backends={name: addresses[name] for name in wanted},
        tokens=[
            edge_pb2.EdgeToken(
                name=t.name, role=ROLE_VALUES[t.role], sha256=bytes.fromhex(t.sha256)
            )
            for t in config.tokens
        ],
        anonymous_read=config.anonymous_read,
        shutdown_grace_seconds=config.shutdown_grace_seconds,
    )
    for path, method in catalog.methods.items():
        if method.backend not in wanted:
            continue
        rate = authorizer.rate(method)
        settings.methods[path].CopyFrom(
            edge_pb2.EdgeMethod(
                backend=method.backend,
                full_name=method.full_name,
                server_streaming=method.server_streaming,
                role=ROLE_VALUES[method.policy.role],
                rate=edge_pb2.Rate(calls=rate[0], per_seconds=rate[1]) if rate else None,
                resource_fields=[edge_pb2.FieldPath(numbers=f) for f in resource_fields(method)],
            )
        )
    if tls is not None:
        cert, key = tls
        settings.tls.CopyFrom(
            edge_pb2.EdgeTls(listen=config.grpc_tls_listen, cert_file=str(cert), key_file=str(key))
        )
    return settings


async def read_delimited(stream: asyncio.StreamReader) -> bytes | None:
    """One length-delimited message (a varint byte count, then the bytes); None at the end."""
    size = shift = 0
    while True:
        byte = await stream.read(1)
        if not byte:
            if shift:
                raise asyncio.IncompleteReadError(b"", None)
            return None
        size |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("a length prefix longer than 10 bytes")
    return await stream.readexactly(size)


def _split(full_name: str) -> tuple[str, str]:
    service, _, method = full_name.partition("/")
    return service, method


class Edge:
    """The edge process: started, read, restarted when it dies, stopped with the gateway."""

    def __init__(
        self,
        binary: str,
        settings: edge_pb2.EdgeConfig,
        state_dir: Path,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.binary = binary
        # The runtime's: the watcher of the edge process is logged, counted and restarted
        # like every other background task (its own crash is not the edge's).
        self.supervisor = supervisor or Supervisor()
        self.settings = settings
        self.config_file = state_dir / "edge.pb"
        self.port = 0
        self.tls_port = 0
        self.process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        # Streams the edge reported open and not yet ended, by method: ended as UNAVAILABLE
        # if the edge dies under them, so the gauges do not count them forever.
        self._open: collections.Counter[str] = collections.Counter()

    async def start(self) -> int:
        """Start the edge; its port (raises ConfigError or EdgeUnavailable if it cannot)."""
        await self._spawn()
        self._supervisor = self.supervisor.spawn(
            self._supervise, SUPERVISOR_TASK, family="edge", restart=True
        )
        return self.port

    async def _spawn(self) -> None:
        self.config_file.touch(0o600)
        self.config_file.chmod(0o600)  # the tokens' digests and the key file's path
        self.config_file.write_bytes(self.settings.SerializeToString())
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary,
                "--config",
                str(self.config_file),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=1 << 20,
            )
        except OSError as exc:
            raise EdgeUnavailable(f"cannot run {self.binary}: {exc.strerror}") from None
        assert process.stdout is not None and process.stderr is not None
        first = edge_pb2.EdgeReport()
        try:
            data = await read_delimited(process.stdout)
            if data is None:
                raise ValueError("no report")
            first.ParseFromString(data)
            if first.WhichOneof("report") != "listening":
                raise ValueError("the first report is not Listening")
        except (ValueError, asyncio.IncompleteReadError, DecodeError):
            await process.wait()
            problem = (await process.stderr.read()).decode(errors="replace").strip()
            if "cannot listen" in problem or "TLS" in problem:
                raise ConfigError(problem.removeprefix("hearth-edge: ")) from None
            raise EdgeUnavailable(problem or f"{self.binary} exited at start") from None
        self.process = process
        self.port = first.listening.port
        self.tls_port = first.listening.tls_port
        # Later listens (after a restart) reuse the ports, which may have been chosen by the OS.
        host = self.settings.listen.rpartition(":")[0]
        self.settings.listen = f"{host}:{self.port}"
        if self.settings.HasField("tls"):
            host = self.settings.tls.listen.rpartition(":")[0]
            self.settings.tls.listen = f"{host}:{self.tls_port}"
        log.info(
            "gRPC front door: hearth-edge",
            extra=kv(port=self.port, tls_port=self.tls_port or None, pid=process.pid),
        )

    async def _supervise(self) -> None:
        attempt = 0
        while True:
            process = self.process
            assert process is not None
            await asyncio.gather(self._read(process), self._read_errors(process))
            code = await process.wait()
            self._end_orphans()
            if self._stopping:
                return
            delay = RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)]
            log.error("hearth-edge exited; starting it again", extra=kv(code=code, in_s=delay))
            await asyncio.sleep(delay)
            try:
                await self._spawn()
                attempt = 0
            except (EdgeUnavailable, ConfigError) as exc:
                attempt += 1
                log.error("hearth-edge did not start", extra=kv(error=str(exc)))

    async def _read_errors(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        async for line in process.stderr:
            log.warning("hearth-edge: %s", line.decode(errors="replace").rstrip())

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            try:
                data = await read_delimited(process.stdout)
            except (ValueError, asyncio.IncompleteReadError):
                log.exception("hearth-edge's reports are cut short")
                return
            if data is None:
                return
            try:
                self.handle(edge_pb2.EdgeReport.FromString(data))
            except Exception:
                log.exception("bad report from hearth-edge: %r", data[:200])

    def _end_orphans(self) -> None:
        for name, count in list(self._open.items()):
            for _ in range(count):
                ended = edge_pb2.CallEnded(
                    method=name, server_streaming=True, code=grpc.StatusCode.UNAVAILABLE.value[0]
                )
                self.handle(edge_pb2.EdgeReport(ended=ended))
        self._open.clear()

    def handle(self, report: edge_pb2.EdgeReport) -> None:
        kind = report.WhichOneof("report")
        if kind == "ended":
            ended = report.ended
            service, method = _split(ended.method)
            streaming = ended.server_streaming
            if streaming:
                self._open[ended.method] -= 1
            record_handled(
                "server_stream" if streaming else "unary",
                service,
                method,
                _CODE_NAMES.get(ended.code, "UNKNOWN"),
                ended.seconds,
                ended.messages_received,
                ended.messages_sent,
                started_here=not streaming,
            )
            if streaming:
                ACTIVE_STREAMS.labels("grpc", ended.method).dec()
        elif kind == "started":
            name = report.started.method
            service, method = _split(name)
            record_started("server_stream", service, method)
            ACTIVE_STREAMS.labels("grpc", name).inc()
            self._open[name] += 1
        elif kind == "log":
            line = report.log
            logger = logging.getLogger(line.logger or log.name)
            pairs = {field.key: field.value for field in line.fields}
            logger.log(_LEVELS.get(line.level, logging.INFO), line.message, extra=kv(**pairs))

    async def drain(self) -> None:
        """Stop taking calls and let the ones in flight finish (the edge's grace period)."""
        self._stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        grace = self.settings.shutdown_grace_seconds + 2.0
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def close(self) -> None:
        await self.drain()
        if self._supervisor is not None:
            self.supervisor.cancel(SUPERVISOR_TASK)
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
