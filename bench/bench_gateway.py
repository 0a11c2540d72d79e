#!/usr/bin/env python3
"""Gateway benchmark (as root: it builds a small lab).

The real hearth-wake and hearth-gateway run in a lab host; this process is the client, in the
root namespace, reaching both over the lab's private /30.

- unary latency of ``GetHost`` straight to wake and through the gateway (p50 ratio <= 1.5),
  interleaved in blocks so that machine noise hits both alike;
- throughput of both with 64 calls in flight;
- event delivery: 500 concurrent ``WatchHostEvents`` subscribers through the gateway (gRPC,
  then SSE); each ``UpdateHost`` publishes an event stamped by wake, and the latency is the
  time from that stamp to its arrival at each subscriber (every subscriber must get every
  event).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import grpc
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_client.tokens import hash_token
from hearth_lab import Lab, lab_available
from hearth_runtime import ports
from hearth_runtime.ports import GATEWAY, HTTP_PORT, PORTS
from hearth_testing import ServiceProcess
from hearth_testing.bench import Result, sequential

TOKEN = "bench-operator-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
LATENCY_CALLS = 3000
BLOCK = 250
THROUGHPUT_SECONDS = 4.0
IN_FLIGHT = 64
SUBSCRIBERS = 500
# Which front door serves the gateway's gRPC port (edge: hearth-edge; python: grpc-python).
FRONT = os.environ.get("BENCH_GATEWAY_FRONT", "edge")
EVENTS = 20


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def throughput(call: Callable[[], Awaitable[Any]]) -> float:
    done = 0
    stop = time.perf_counter() + THROUGHPUT_SECONDS

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return done / (time.perf_counter() - start)


def stamp_age(stamp_ns: int) -> float:
    return time.time() - stamp_ns / 1e9


async def grpc_subscriber(
    channel: grpc.aio.Channel, ready: asyncio.Event, latencies: list[float], counts: list[int]
) -> None:
    stub = wake_pb2_grpc.WakeServiceStub(channel)
    stream = stub.WatchHostEvents(
        wake_pb2.WatchHostEventsRequest(name="hosts/devbox"), metadata=AUTH
    )
    got = 0
    async for event in stream:
        if event.kind == wake_pb2.HostEvent.KIND_CURRENT:
            ready.set()
            continue
        if event.kind == wake_pb2.HostEvent.Kind.Value("KIND_UPDATED"):
            latencies.append(stamp_age(event.time.ToNanoseconds()))
            got += 1
            if got == EVENTS:
                break
    counts.append(got)
    stream.cancel()


async def sse_subscriber(
    session: aiohttp.ClientSession,
    url: str,
    ready: asyncio.Event,
    latencies: list[float],
    counts: list[int],
) -> None:
    got = 0
    async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        async for raw in response.content:
            line = raw.decode()
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["kind"] == "KIND_CURRENT":
                ready.set()
                continue
            if event["kind"] == "KIND_UPDATED":
                stamp = timestamp_pb2.Timestamp()
                stamp.FromJsonString(event["time"])
                latencies.append(stamp_age(stamp.ToNanoseconds()))
                got += 1
                if got == EVENTS:
                    break
    counts.append(got)


async def fan_out(
    wake: Any,
    subscribe: Callable[[asyncio.Event, list[float], list[int]], Coroutine[Any, Any, None]],
) -> tuple[list[float], list[int], float]:
    latencies: list[float] = []
    counts: list[int] = []
    readies = [asyncio.Event() for _ in range(SUBSCRIBERS)]
    tasks = [asyncio.create_task(subscribe(r, latencies, counts)) for r in readies]
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    connect = time.perf_counter() - start
    for i in range(EVENTS):
        host = wake_pb2.Host(name="hosts/devbox")
        host.alive_timeout.CopyFrom(duration_pb2.Duration(seconds=60 + i))
        await wake.UpdateHost(
            wake_pb2.UpdateHostRequest(
                host=host, update_mask=field_mask_pb2.FieldMask(paths=["alive_timeout"])
            )
        )
        await asyncio.sleep(0.1)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    return latencies, counts, connect


async def measure(result: Result, direct: str, gateway: str, http: str, devbox: Any) -> None:
    async with (
        grpc.aio.insecure_channel(direct) as direct_channel,
        grpc.aio.insecure_channel(gateway) as gateway_channel,
    ):
        direct_stub = wake_pb2_grpc.WakeServiceStub(direct_channel)
        gateway_stub = wake_pb2_grpc.WakeServiceStub(gateway_channel)
        await direct_stub.CreateHost(
            wake_pb2.CreateHostRequest(
                host_id="devbox", host=wake_pb2.Host(mac=devbox.mac, ipv4=devbox.ipv4)
            )
        )
        request = wake_pb2.GetHostRequest(name="hosts/devbox")

        def via_direct() -> Awaitable[Any]:
            return direct_stub.GetHost(request)

        def via_gateway() -> Awaitable[Any]:
            return gateway_stub.GetHost(request, metadata=AUTH)

        await sequential(via_direct, 200)  # warm up both paths
        await sequential(via_gateway, 200)
        direct_times: list[float] = []
        gateway_times: list[float] = []
        for _ in range(LATENCY_CALLS // BLOCK):
            direct_times += await sequential(via_direct, BLOCK)
            gateway_times += await sequential(via_gateway, BLOCK)
        d50, g50 = statistics.median(direct_times), statistics.median(gateway_times)
        result.add("unary GetHost p50 direct", d50 * 1e3, "ms")
        result.add("unary GetHost p50 through the gateway", g50 * 1e3, "ms")
        result.add("unary GetHost p99 direct", pct(direct_times, 99) * 1e3, "ms")
        result.add("unary GetHost p99 through the gateway", pct(gateway_times, 99) * 1e3, "ms")
        result.add("p50 ratio gateway / direct", g50 / d50, "x", target="<= 1.5")
        result.series["unary latency direct (ms)"] = [t * 1e3 for t in direct_times]
        result.series["unary latency through the gateway (ms)"] = [t * 1e3 for t in gateway_times]
        result.add(
            f"throughput direct ({IN_FLIGHT} in flight)", await throughput(via_direct), "calls/s"
        )
        result.add(
            f"throughput through the gateway ({IN_FLIGHT} in flight)",
            await throughput(via_gateway),
            "calls/s",
        )

        if os.environ.get("BENCH_GATEWAY_UNARY_ONLY"):
            return

        async def grpc_sub(ready: asyncio.Event, lat: list[float], counts: list[int]) -> None:
            await grpc_subscriber(gateway_channel, ready, lat, counts)

        latencies, counts, connect = await fan_out(direct_stub, grpc_sub)
        report_fan_out(result, "gRPC Watch", latencies, counts, connect)

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        ) as session:
            url = f"http://{http}/v1/hosts:watch?name=hosts/devbox"

            async def sse_sub(ready: asyncio.Event, lat: list[float], counts: list[int]) -> None:
                await sse_subscriber(session, url, ready, lat, counts)

            latencies, counts, connect = await fan_out(direct_stub, sse_sub)
            report_fan_out(result, "SSE", latencies, counts, connect)


def report_fan_out(
    result: Result, face: str, latencies: list[float], counts: list[int], connect: float
) -> None:
    complete = sum(1 for c in counts if c == EVENTS)
    result.add(f"{face}: subscribers that got all {EVENTS} events", complete, f"of {SUBSCRIBERS}")
    result.add(f"{face}: {SUBSCRIBERS} subscribers connected in", connect, "s")
    result.add(
        f"{face}: event delivery p50 ({SUBSCRIBERS} subscribers)", pct(latencies, 50) * 1e3, "ms"
    )
    result.add(
        f"{face}: event delivery p99 ({SUBSCRIBERS} subscribers)", pct(latencies, 99) * 1e3, "ms"
    )
    result.add(f"{face}: event delivery max", max(latencies) * 1e3, "ms")
    result.series[f"{face} event delivery latency (ms)"] = [v * 1e3 for v in latencies]


def main() -> int:
    ok, reason = lab_available()
    if not ok:
        print(f"bench_gateway needs the lab: {reason}")
        return 1
    result = Result("gateway", "Gateway: forwarding overhead and event fan-out")
    with Lab(prefix="bgw") as lab:
        hub = lab.add_host("hub")
        devbox = lab.add_host("devbox")
        address = hub.expose()
        netns = ["ip", "netns", "exec", hub.netns]
        wake = ServiceProcess(
            "wake",
            env={
                "HEARTH_WAKE_GRPC_LISTEN": f"0.0.0.0:{PORTS['wake'].grpc}",
                "HEARTH_WAKE_METRICS_LISTEN": ports.metrics_listen("wake"),
                "HEARTH_WAKE_STATE_DIR": str(lab.workdir / "wake"),
            },
            prefix=netns,
            log_path=lab.workdir / "wake.log",
        )
        gateway = ServiceProcess(
            "gateway",
            env={
                "HEARTH_GATEWAY_GRPC_LISTEN": f"0.0.0.0:{PORTS[GATEWAY].grpc}",
                "HEARTH_GATEWAY_METRICS_LISTEN": ports.metrics_listen(GATEWAY),
                "HEARTH_GATEWAY_HTTP_LISTEN": f"0.0.0.0:{HTTP_PORT}",
                "HEARTH_GATEWAY_STATE_DIR": str(lab.workdir / "gateway"),
                "HEARTH_GATEWAY_GRPC_FRONT": FRONT,
                "HEARTH_GATEWAY_WAKE_ADDRESS": ports.local_address("wake", "127.0.0.1"),
                "HEARTH_GATEWAY_AUDIO_ADDRESS": ports.local_address("audio", "127.0.0.1"),
                "HEARTH_GATEWAY_CI_ADDRESS": ports.local_address("ci", "127.0.0.1"),
                "HEARTH_GATEWAY_TOKENS": json.dumps(
                    [{"name": "bench", "role": "operator", "sha256": hash_token(TOKEN)}]
                ),
            },
            prefix=netns,
            log_path=lab.workdir / "gateway.log",
        )
        with wake, gateway:
            asyncio.run(
                measure(
                    result,
                    ports.local_address("wake", address),
                    ports.local_address(GATEWAY, address),
                    f"{address}:{HTTP_PORT}",
                    devbox,
                )
            )
    result.notes.append(f"gRPC front door: {FRONT} (BENCH_GATEWAY_FRONT=edge|python)")
    result.notes.append(
        "One client process drives every subscriber, so fan-out latency includes its own "
        "parsing of 500 streams; the backend stamps each event when it publishes it."
    )
    result.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
