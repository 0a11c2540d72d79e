#!/usr/bin/env python3
"""What one extra hop costs: grpc-python proxies vs hearth-edge, the gateway's front door.

Processes on loopback: an echo backend (grpc.aio, answers the request bytes), two bare
grpc-python proxies that forward the bytes to it and do nothing else (no auth, metrics or
audit): one on grpc.aio with an aio channel, one on grpc's thread-pool server with a blocking
channel; and hearth-edge with one route to the echo method (anonymous reading allowed, so it
does everything but check a token). The client (grpc.aio, like the gateway benchmark's)
measures sequential unary calls to each, interleaved in blocks so machine noise hits all
alike.

The gateway benchmark's target is a p50 ratio <= 1.5 through the gateway vs direct: this
shows that no grpc-python front door can meet it (a bare hop is ~2x), which is why the
gateway's gRPC port is served by hearth-edge.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any

import grpc

from hearth_testing.bench import Result, sequential

SERVICE = "bench.Echo"
METHOD = f"/{SERVICE}/Get"
REQUEST = b"\n\rhosts/devbox" * 4  # about the size of a GetHostRequest
CALLS = 2000
BLOCK = 250


def _timeout(context: Any) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 10**8 else float(remaining)


def _register(server: Any, behavior: Callable[..., Any]) -> None:
    handler: Any = grpc.unary_unary_rpc_method_handler(behavior)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Get": handler}),)
    )


async def _serve_aio(upstream: str | None) -> None:
    server = grpc.aio.server()
    if upstream is None:

        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        _register(server, echo)
    else:
        forward_call: Any = grpc.aio.insecure_channel(upstream).unary_unary(METHOD)

        async def forward(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            response: bytes = await forward_call(
                request, timeout=_timeout(context), metadata=context.invocation_metadata()
            )
            return response

        _register(server, forward)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def _serve_threads(upstream: str) -> None:
    forward_call: Any = grpc.insecure_channel(upstream).unary_unary(METHOD)

    def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
        response: bytes = forward_call(
            request, timeout=_timeout(context), metadata=context.invocation_metadata()
        )
        return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    _register(server, forward)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


def serve(role: str, upstream: str | None) -> None:
    if role == "threads" and upstream:
        _serve_threads(upstream)
    else:
        asyncio.run(_serve_aio(upstream))


def start(role: str, upstream: str | None = None) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, __file__, role, *([upstream] if upstream else [])]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.isdigit():
        process.kill()
        raise RuntimeError(f"{role} did not start")
    return process, f"127.0.0.1:{line}"


def start_edge(upstream: str, workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    from hearth_gateway.edge import find_binary

    binary = find_binary("hearth-edge")
    if binary is None:
        raise RuntimeError("hearth-edge is not installed (make install builds it)")
    from hearth.auth.v1 import policy_pb2
    from hearth.gateway.internal.v1 import edge_pb2

    settings = edge_pb2.EdgeConfig(
        listen="127.0.0.1:0",
        fallback=f"unix:{workdir}/none.sock",
        backends={"echo": upstream},
        methods={
            METHOD: edge_pb2.EdgeMethod(
                backend="echo", full_name=METHOD.lstrip("/"), role=policy_pb2.ROLE_VIEWER
            )
        },
        anonymous_read=True,
    )
    config = f"{workdir}/edge.pb"
    with open(config, "wb") as out:
        out.write(settings.SerializeToString())
    process = subprocess.Popen(
        [binary, "--config", config], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    # The first report, length-delimited: Listening (a report is far below 128 bytes).
    size = process.stdout.read(1)[0]
    port = edge_pb2.EdgeReport.FromString(process.stdout.read(size)).listening.port
    # Its per-call reports are read (and dropped) as the gateway would read them.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, f"127.0.0.1:{port}"


async def measure(result: Result, targets: dict[str, str]) -> None:
    channels = {name: grpc.aio.insecure_channel(addr) for name, addr in targets.items()}
    calls: dict[str, Any] = {name: ch.unary_unary(METHOD) for name, ch in channels.items()}

    def caller(name: str) -> Callable[[], Awaitable[Any]]:
        return lambda: calls[name](REQUEST)

    times: dict[str, list[float]] = {name: [] for name in targets}
    for name in targets:
        await sequential(caller(name), 200)  # warm up
    for _ in range(CALLS // BLOCK):
        for name in targets:
            times[name] += await sequential(caller(name), BLOCK)
    direct = statistics.median(times["direct"])
    for name, samples in times.items():
        p50 = statistics.median(samples)
        result.add(f"unary p50 {name}", p50 * 1e3, "ms")
        if name != "direct":
            result.add(f"p50 ratio {name} / direct", p50 / direct, "x")
        result.series[f"unary latency {name} (ms)"] = [t * 1e3 for t in samples]
    for channel in channels.values():
        await channel.close()


def main() -> int:
    result = Result("grpc_hop", "One extra hop: bare grpc-python proxies and hearth-edge")
    processes: list[subprocess.Popen[Any]] = []
    try:
        backend, backend_addr = start("echo")
        processes.append(backend)
        aio, aio_addr = start("aio", backend_addr)
        processes.append(aio)
        threads, threads_addr = start("threads", backend_addr)
        processes.append(threads)
        workdir = tempfile.mkdtemp(prefix="bench-hop-")
        edge, edge_addr = start_edge(backend_addr, workdir)
        processes.append(edge)
        targets = {
            "direct": backend_addr,
            "via bare aio proxy": aio_addr,
            "via bare thread-pool proxy": threads_addr,
            "via hearth-edge": edge_addr,
        }
        asyncio.run(measure(result, targets))
    finally:
        for process in processes:
            process.kill()
            process.wait()
    result.notes.append(
        "The grpc-python proxies forward bytes and nothing else: their ratio is the least "
        "any grpc-python front door can add. hearth-edge is the gateway's front door."
    )
    result.write()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
        sys.exit(0)
    sys.exit(main())
