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
from google.protobuf import duration_pb2, empty_pb2

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

HUGE_ANSWER = "hosts/huge-answer"
"""GetHost of this name answers with 20 kB of grpc-message."""


class FakeWake(wake_pb2_grpc.WakeServiceServicer):
    def __init__(self) -> None:
        self.hosts: dict[str, wake_pb2.Host] = {}
        self.events: Broadcaster[wake_pb2.HostEvent] = Broadcaster()
        self.metadata_seen: list[dict[str, str]] = []
        # Every (key, value) pair, repeats kept: a forged header forwarded beside the real one
        # shows here, not in the dict above.
        self.metadata_pairs: list[list[tuple[str, str]]] = []
        self.deadlines_seen: list[float | None] = []
        self.waiting = asyncio.Event()  # a WaitUntilAwake call is in the backend
        self.cancelled = asyncio.Event()  # ... and its cancellation arrived
        self.wakes: list[wake_pb2.Wake] = []

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
        host.state = wake_pb2.HOST_STATE_ASLEEP
        self.hosts[name] = host
        return host

    async def GetHost(
        self, request: wake_pb2.GetHostRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Host:
        self.metadata_seen.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        self.metadata_pairs.append([(k, str(v)) for k, v in context.invocation_metadata() or ()])
        if request.name == HUGE_ANSWER:
            # An error whose trailers are larger than gRPC's 16 KiB metadata limit, sent
            # trailers-only (no headers first), as a backend's early error is.
            await context.abort(grpc.StatusCode.NOT_FOUND, "x" * 20_000)
        await context.send_initial_metadata((("x-served-by", "fake-wake"),))
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
        host.state = wake_pb2.HOST_STATE_AWAKE
        wake = wake_pb2.Wake(
            name=f"{host.name}/wakes/{len(self.wakes) + 1}",
            host=host.name,
            trigger=wake_pb2.WAKE_TRIGGER_MANUAL,
            outcome=wake_pb2.WAKE_OUTCOME_WOKE,
        )
        wake.demand_time.GetCurrentTime()
        wake.reaction.FromMilliseconds(2)
        wake.resume.FromMilliseconds(1500)
        self.wakes.insert(0, wake)
        self.events.publish(
            wake_pb2.HostEvent(kind=wake_pb2.HostEvent.KIND_ALIVE, host=host, wake=wake)
        )
        return wake

    async def WaitUntilAwake(
        self, request: wake_pb2.WaitUntilAwakeRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Host:
        if self._get(request.name).state == wake_pb2.HOST_STATE_AWAKE:
            return self._get(request.name)
        self.waiting.set()
        try:
            await asyncio.sleep(3600)  # an asleep host never wakes: tests cancel or time out
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return self._get(request.name)

    async def ListWakes(
        self, request: wake_pb2.ListWakesRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.ListWakesResponse:
        return wake_pb2.ListWakesResponse(wakes=self.wakes)

    async def WatchHostEvents(
        self, request: wake_pb2.WatchHostEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wake_pb2.HostEvent]:
        async with self.events.subscribe() as events:
            for host in list(self.hosts.values()):
                yield wake_pb2.HostEvent(kind=wake_pb2.HostEvent.KIND_CURRENT, host=host)
            async for event in events:
                yield event


class FakeAudio(audio_pb2_grpc.AudioServiceServicer):
    def __init__(self) -> None:
        self.zones = {
            "zones/kitchen": audio_pb2.Zone(name="zones/kitchen", server="tcp:k:4713", volume=1),
            "zones/office": audio_pb2.Zone(name="zones/office", server="tcp:o:4713", volume=0.5),
        }
        self.streams = {
            name: audio_pb2.Stream(name=name, group="239.255.0.1", port=46000, enabled=True)
            for name in ("streams/radio", "streams/tv")
        }
        self.playlist = [
            audio_pb2.Song(title="So What", artist="Miles Davis"),
            audio_pb2.Song(title="Blue in Green", artist="Miles Davis"),
        ]
        self.player = audio_pb2.Player(
            state=audio_pb2.PLAYER_STATE_PLAYING, current_song=self.playlist[0], reachable=True
        )
        self.actions: list[str] = []  # ControlPlayer actions, as they arrived
        self.events: Broadcaster[audio_pb2.AudioEvent] = Broadcaster()

    def _changed(self, zone: audio_pb2.Zone) -> audio_pb2.Zone:
        self.events.publish(
            audio_pb2.AudioEvent(kind=audio_pb2.AudioEvent.KIND_ZONE_CHANGED, zones=[zone])
        )
        return zone

    async def UpdateZone(
        self, request: audio_pb2.UpdateZoneRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Zone:
        if request.zone.name not in self.zones:
            raise not_found("zone", request.zone.name)
        zone = self.zones[request.zone.name]
        for path in request.update_mask.paths:
            setattr(zone, path, getattr(request.zone, path))
        return self._changed(zone)

    async def UnsubscribeZone(
        self, request: audio_pb2.UnsubscribeZoneRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Zone:
        zone = self.zones[request.name]
        zone.stream = ""
        return self._changed(zone)

    async def ControlPlayer(
        self, request: audio_pb2.ControlPlayerRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Player:
        self.actions.append(audio_pb2.ControlPlayerRequest.Action.Name(request.action))
        if request.action == request.ACTION_PAUSE:
            self.player.state = audio_pb2.PLAYER_STATE_PAUSED
        elif request.action == request.ACTION_PLAY:
            self.player.state = audio_pb2.PLAYER_STATE_PLAYING
        elif request.action == request.ACTION_NEXT:
            after = (list(self.playlist).index(self.player.current_song) + 1) % len(self.playlist)
            self.player.current_song.CopyFrom(self.playlist[after])
        self.events.publish(
            audio_pb2.AudioEvent(kind=audio_pb2.AudioEvent.KIND_PLAYER_CHANGED, player=self.player)
        )
        return self.player

    async def ListZones(
        self, request: audio_pb2.ListZonesRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.ListZonesResponse:
        return audio_pb2.ListZonesResponse(zones=list(self.zones.values()))

    async def ListStreams(
        self, request: audio_pb2.ListStreamsRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.ListStreamsResponse:
        return audio_pb2.ListStreamsResponse(streams=list(self.streams.values()))

    async def SubscribeZone(
        self, request: audio_pb2.SubscribeZoneRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.Zone:
        if request.name not in self.zones:
            raise not_found("zone", request.name)
        zone = self.zones[request.name]
        zone.stream = request.stream
        return self._changed(zone)

    async def WatchAudio(
        self, request: audio_pb2.WatchAudioRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[audio_pb2.AudioEvent]:
        async with self.events.subscribe() as events:
            yield audio_pb2.AudioEvent(
                kind=audio_pb2.AudioEvent.KIND_CURRENT,
                zones=list(self.zones.values()),
                streams=list(self.streams.values()),
                player=self.player,
                health=[audio_pb2.StreamHealth(name="streams/radio/health", up=True)],
            )
            async for event in events:
                yield event


DASHBOARD = ci_pb2.Dashboard(
    watch="watches/mine",
    zuul=ci_pb2.ZuulStatus(message="Zuul is being upgraded", event_queues={"trigger": 3}),
    pipelines=[
        ci_pb2.Pipeline(
            name="gate",
            total_items=2,
            queues=[
                ci_pb2.Queue(
                    name="integrated",
                    total=2,
                    items=[
                        ci_pb2.Item(
                            change="12345,6",
                            subject="Fix the flux capacitor",
                            status=ci_pb2.ITEM_STATUS_FAILING,
                            progress=0.5,
                            eta=duration_pb2.Duration(seconds=300),
                            job_string="+-~_",
                        ),
                        ci_pb2.Item(
                            change="12350,1", subject="Docs", status=ci_pb2.ITEM_STATUS_PASSING
                        ),
                    ],
                )
            ],
        )
    ],
)


class FakeCi(ci_pb2_grpc.CiServiceServicer):
    def __init__(self) -> None:
        self.events: Broadcaster[ci_pb2.DashboardEvent] = Broadcaster()

    async def ListWatches(
        self, request: ci_pb2.ListWatchesRequest, context: grpc.aio.ServicerContext
    ) -> ci_pb2.ListWatchesResponse:
        return ci_pb2.ListWatchesResponse(
            watches=[ci_pb2.Watch(name="watches/mine", display_name="my changes")]
        )

    async def GetDashboard(
        self, request: ci_pb2.GetDashboardRequest, context: grpc.aio.ServicerContext
    ) -> ci_pb2.Dashboard:
        return DASHBOARD

    async def WatchDashboard(
        self, request: ci_pb2.WatchDashboardRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ci_pb2.DashboardEvent]:
        async with self.events.subscribe() as events:
            yield ci_pb2.DashboardEvent(
                kind=ci_pb2.DashboardEvent.KIND_SNAPSHOT, dashboard=DASHBOARD
            )
            async for event in events:  # what a test publishes
                yield event

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
