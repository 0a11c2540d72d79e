"""Small backends that implement the real wake/audio/ci contracts, for the gateway's tests.

They stand in for the services behind the gateway (the gateway is the thing under test) and
run on the real shared runtime, so health, reflection, errors and trailers are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import empty_pb2

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_runtime import (
    AlreadyExists,
    InvalidArgument,
    Runtime,
    ServiceConfig,
    ServiceSpec,
    start_service,
)
from hearth_runtime.broadcast import Broadcaster
from hearth_runtime.errors import not_found


class FakeWake(wake_pb2_grpc.WakeServiceServicer):
    def __init__(self) -> None:
        self.hosts: dict[str, wake_pb2.Host] = {}
        self.events: Broadcaster[wake_pb2.HostEvent] = Broadcaster()
        self.metadata_seen: list[dict[str, str]] = []
        self.deadlines_seen: list[float | None] = []
        self.cancelled = asyncio.Event()

    def _get(self, name: str) -> wake_pb2.Host:
        if name not in self.hosts:
            raise not_found("host", name)
        return self.hosts[name]

    async def CreateHost(
        self, request: wake_pb2.CreateHostRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Host:
        if not request.host_id:
            raise InvalidArgument("host_id", "must not be empty")
        name = f"hosts/{request.host_id}"
        if name in self.hosts:
            raise AlreadyExists(f"host {name!r} already exists")
        host = wake_pb2.Host()
        host.CopyFrom(request.host)
        host.name = name
        host.state = wake_pb2.ASLEEP
        self.hosts[name] = host
        return host

    async def GetHost(
        self, request: wake_pb2.GetHostRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Host:
        self.metadata_seen.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        self.deadlines_seen.append(context.time_remaining())
        return self._get(request.name)

    async def ListHosts(
        self, request: wake_pb2.ListHostsRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.ListHostsResponse:
        return wake_pb2.ListHostsResponse(hosts=list(self.hosts.values()))

    async def DeleteHost(
        self, request: wake_pb2.DeleteHostRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        self._get(request.name)
        del self.hosts[request.name]
        return empty_pb2.Empty()

    async def WakeHost(
        self, request: wake_pb2.WakeHostRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Wake:
        host = self._get(request.name)
        host.state = wake_pb2.AWAKE
        wake = wake_pb2.Wake(name=f"{host.name}/wakes/1", host=host.name, trigger=wake_pb2.MANUAL)
        self.events.publish(wake_pb2.HostEvent(kind=wake_pb2.HostEvent.ALIVE, host=host))
        return wake

    async def WaitUntilAwake(
        self, request: wake_pb2.WaitUntilAwakeRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Host:
        try:
            await asyncio.sleep(3600)  # never wakes: tests cancel or time out
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return self._get(request.name)

    async def WatchHostEvents(
        self, request: wake_pb2.WatchHostEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wake_pb2.HostEvent]:
        async with self.events.subscribe() as events:
            for host in list(self.hosts.values()):
                yield wake_pb2.HostEvent(kind=wake_pb2.HostEvent.CURRENT, host=host)
            async for event in events:
                yield event


class FakeAudio(audio_pb2_grpc.AudioServiceServicer):
    def __init__(self) -> None:
        self.zones = {
            "zones/kitchen": audio_pb2.Zone(name="zones/kitchen", server="tcp:k:4713", volume=1)
        }
        self.events: Broadcaster[audio_pb2.AudioEvent] = Broadcaster()

    async def ListZones(
        self, request: audio_pb2.ListZonesRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.ListZonesResponse:
        return audio_pb2.ListZonesResponse(zones=list(self.zones.values()))

    async def SubscribeZone(
        self, request: audio_pb2.SubscribeZoneRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Zone:
        if request.name not in self.zones:
            raise not_found("zone", request.name)
        zone = self.zones[request.name]
        zone.stream = request.stream
        self.events.publish(
            audio_pb2.AudioEvent(kind=audio_pb2.AudioEvent.ZONE_CHANGED, zones=[zone])
        )
        return zone

    async def WatchAudio(
        self, request: audio_pb2.WatchAudioRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audio_pb2.AudioEvent]:
        async with self.events.subscribe() as events:
            yield audio_pb2.AudioEvent(
                kind=audio_pb2.AudioEvent.CURRENT, zones=list(self.zones.values())
            )
            async for event in events:
                yield event


class FakeCi(ci_pb2_grpc.CiServiceServicer):
    async def ListPipelines(
        self, request: ci_pb2.ListPipelinesRequest, context: grpc.aio.ServicerContext
    ) -> ci_pb2.ListPipelinesResponse:
        return ci_pb2.ListPipelinesResponse(
            pipelines=[ci_pb2.Pipeline(name="gate", total_items=2)],
            zuul=ci_pb2.ZuulStatus(message="Zuul is being upgraded"),
        )


@dataclass
class FakeBackends:
    wake: FakeWake = field(default_factory=FakeWake)
    audio: FakeAudio = field(default_factory=FakeAudio)
    ci: FakeCi = field(default_factory=FakeCi)
    runtimes: dict[str, Runtime[ServiceConfig]] = field(default_factory=dict)

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.runtimes[name].grpc_port}"

    async def start(self, name: str, port: int = 0) -> Runtime[ServiceConfig]:
        table: dict[str, tuple[Any, Any, str]] = {
            "wake": (self.wake, wake_pb2_grpc.add_WakeServiceServicer_to_server, "WakeService"),
            "audio": (
                self.audio,
                audio_pb2_grpc.add_AudioServiceServicer_to_server,
                "AudioService",
            ),
            "ci": (self.ci, ci_pb2_grpc.add_CiServiceServicer_to_server, "CiService"),
        }
        servicer, add, service = table[name]
        full = f"hearth.{name}.v1.{service}"

        async def setup(runtime: Runtime[ServiceConfig]) -> None:
            runtime.add_servicer(add, servicer, full)

        config = ServiceConfig(grpc_listen=f"127.0.0.1:{port}", shutdown_grace_seconds=0)
        runtime = await start_service(ServiceSpec(name, ServiceConfig, setup, "9.9.9"), config)
        self.runtimes[name] = runtime
        return runtime

    async def stop(self, name: str) -> None:
        await self.runtimes[name].stop(grace=0)
