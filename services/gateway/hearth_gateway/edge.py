"""hearth-edge, the Rust front door on the public gRPC port, run and fed by this process.

Why: every hop through grpc-python costs about as much as the call it forwards (see
bench/bench_grpc_hop.py), so a Python front door at least doubles a call's latency. The edge
forwards wake, audio and ci calls as HTTP/2 frames, applying the same tokens, roles and rate
limits (``hearth_gateway.auth`` is the reference; the edge's tests mirror it), and passes
everything else (the Gateway service, health, reflection) to this process's gRPC server
over its private unix socket.

This process stays the single source of truth: it validates the user's configuration and
hands the edge a JSON file derived from it and from the catalog, and the edge reports back
on stdout: its port, each call it served (turned into the same ``grpc_server_*`` metrics the
Python front door counts) and its log lines (the audit lines among them). If the edge dies
it is started again on the same port; if it cannot start at all, ``grpc_front: auto`` falls
back to serving gRPC from Python.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hearth_gateway.catalog import Catalog, Method
from hearth_gateway.config import GatewayConfig, parse_rate
from hearth_gateway.proxy import ACTIVE_STREAMS, resource_paths
from hearth_runtime import ConfigError
from hearth_runtime.grpc_metrics import record_handled, record_started
from hearth_runtime.logs import kv
from hearth_runtime.supervisor import Supervisor

log = logging.getLogger("hearth.gateway.edge")

BINARY = "hearth-edge"
RESTART_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
SUPERVISOR_TASK = "edge-supervisor"


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
    backends: Iterable[str],
    fallback: str,
    private_listen: str,
) -> dict[str, Any]:
    addresses = config.backend_addresses()
    wanted = set(backends)
    methods = {}
    for path, method in catalog.methods.items():
        if method.backend not in wanted:
            continue
        rate = config.rate_limits.get(method.full_name)
        calls, per = parse_rate(rate) if rate else (None, None)
        methods[path] = {
            "backend": method.backend,
            "full_name": method.full_name,
            "mutating": method.mutating,
            "server_streaming": method.server_streaming,
            "rate_calls": calls,
            "rate_per_seconds": per,
            "resource_fields": resource_fields(method),
        }
    return {
        "listen": config.grpc_listen,
        "private_listen": private_listen,
        "fallback": fallback,
        "backends": {name: addresses[name] for name in wanted},
        "methods": methods,
        "tokens": [t.model_dump() for t in config.tokens],
        "anonymous_read": config.anonymous_read,
        "shutdown_grace_seconds": config.shutdown_grace_seconds,
    }


def _split(full_name: str) -> tuple[str, str]:
    service, _, method = full_name.partition("/")
    return service, method


class Edge:
    """The edge process: started, read, restarted when it dies, stopped with the gateway."""

    def __init__(
        self,
        binary: str,
        settings: dict[str, Any],
        state_dir: Path,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.binary = binary
        # The runtime's: the watcher of the edge process is logged, counted and restarted
        # like every other background task (its own crash is not the edge's).
        self.supervisor = supervisor or Supervisor()
        self.settings = settings
        self.config_file = state_dir / "edge.json"
        self.port = 0
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
        self.config_file.write_text(json.dumps(self.settings))
        self.config_file.chmod(0o600)
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
        first = await process.stdout.readline()
        try:
            record = json.loads(first)
            self.port = int(record["port"])
        except (ValueError, KeyError, TypeError):
            await process.wait()
            problem = (await process.stderr.read()).decode(errors="replace").strip()
            if "cannot listen" in problem:
                raise ConfigError(problem.removeprefix("hearth-edge: ")) from None
            raise EdgeUnavailable(problem or f"{self.binary} exited at start") from None
        self.process = process
        # Later listens (after a restart) reuse the port, which may have been chosen by the OS.
        host = str(self.settings["listen"]).rpartition(":")[0]
        self.settings["listen"] = f"{host}:{self.port}"
        log.info("gRPC front door: hearth-edge", extra=kv(port=self.port, pid=process.pid))

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
        async for line in process.stdout:
            try:
                self.handle(json.loads(line))
            except Exception:
                log.exception("bad report from hearth-edge: %r", line[:200])

    def _end_orphans(self) -> None:
        for name, count in list(self._open.items()):
            for _ in range(count):
                self.handle(
                    {
                        "t": "end",
                        "m": name,
                        "k": "server_stream",
                        "c": "UNAVAILABLE",
                        "s": 0.0,
                        "rx": 0,
                        "tx": 0,
                    }
                )
        self._open.clear()

    def handle(self, record: dict[str, Any]) -> None:
        kind = record.get("t")
        if kind == "end":
            service, method = _split(record["m"])
            streaming = record["k"] == "server_stream"
            if streaming:
                self._open[record["m"]] -= 1
            record_handled(
                record["k"],
                service,
                method,
                record["c"],
                float(record["s"]),
                int(record["rx"]),
                int(record["tx"]),
                started_here=not streaming,
            )
            if streaming:
                ACTIVE_STREAMS.labels("grpc", record["m"]).dec()
        elif kind == "start":
            service, method = _split(record["m"])
            record_started(record["k"], service, method)
            ACTIVE_STREAMS.labels("grpc", record["m"]).inc()
            self._open[record["m"]] += 1
        elif kind == "log":
            level = logging.getLevelName(str(record.get("level", "INFO")))
            logger = logging.getLogger(str(record.get("logger", log.name)))
            pairs = {str(k): v for k, v in record.get("kv", [])}
            logger.log(
                level if isinstance(level, int) else logging.INFO, record["msg"], extra=kv(**pairs)
            )

    async def drain(self) -> None:
        """Stop taking calls and let the ones in flight finish (the edge's grace period)."""
        self._stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        grace = float(self.settings["shutdown_grace_seconds"]) + 2.0
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
