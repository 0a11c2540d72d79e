"""gRPC face of the audio service: validates a request, calls the app, answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth_audio.app import AudioApp
from hearth_runtime import FailedPrecondition, InvalidArgument
from hearth_runtime.broadcast import Lagged
from hearth_runtime.resources import check_id, paginate
from hearth_runtime.timeconv import duration_seconds

SERVICE_NAME = audio_pb2.DESCRIPTOR.services_by_name["AudioService"].full_name

Ctx = grpc.aio.ServicerContext


class AudioServicer(audio_pb2_grpc.AudioServiceServicer):
    def __init__(self, app: AudioApp) -> None:
        self.app = app

    # ------------------------------------------------------------------- streams

    async def CreateStream(
        self, request: audio_pb2.CreateStreamRequest, context: Ctx
    ) -> audio_pb2.Stream:
        sid = check_id("stream_id", request.stream_id)
        return await self.app.create_stream(sid, request.stream)

    async def GetStream(
        self, request: audio_pb2.GetStreamRequest, context: Ctx
    ) -> audio_pb2.Stream:
        return self.app.get_stream(request.name)

    async def ListStreams(
        self, request: audio_pb2.ListStreamsRequest, context: Ctx
    ) -> audio_pb2.ListStreamsResponse:
        page, token = paginate(self.app.list_streams(), request.page_size, request.page_token)
        return audio_pb2.ListStreamsResponse(streams=page, next_page_token=token)

    async def UpdateStream(
        self, request: audio_pb2.UpdateStreamRequest, context: Ctx
    ) -> audio_pb2.Stream:
        return await self.app.update_stream(request.stream, request.update_mask)

    async def DeleteStream(
        self, request: audio_pb2.DeleteStreamRequest, context: Ctx
    ) -> empty_pb2.Empty:
        await self.app.delete_stream(request.name)
        return empty_pb2.Empty()

    async def EnableStream(
        self, request: audio_pb2.EnableStreamRequest, context: Ctx
    ) -> audio_pb2.Stream:
        return await self.app.set_stream_enabled(request.name, True)

    async def DisableStream(
        self, request: audio_pb2.DisableStreamRequest, context: Ctx
    ) -> audio_pb2.Stream:
        return await self.app.set_stream_enabled(request.name, False)

    # --------------------------------------------------------------------- zones

    async def CreateZone(
        self, request: audio_pb2.CreateZoneRequest, context: Ctx
    ) -> audio_pb2.Zone:
        zid = check_id("zone_id", request.zone_id)
        return await self.app.create_zone(zid, request.zone)

    async def GetZone(self, request: audio_pb2.GetZoneRequest, context: Ctx) -> audio_pb2.Zone:
        return self.app.get_zone(request.name)

    async def ListZones(
        self, request: audio_pb2.ListZonesRequest, context: Ctx
    ) -> audio_pb2.ListZonesResponse:
        page, token = paginate(self.app.list_zones(), request.page_size, request.page_token)
        return audio_pb2.ListZonesResponse(zones=page, next_page_token=token)

    async def UpdateZone(
        self, request: audio_pb2.UpdateZoneRequest, context: Ctx
    ) -> audio_pb2.Zone:
        return await self.app.update_zone(request.zone, request.update_mask)

    async def DeleteZone(
        self, request: audio_pb2.DeleteZoneRequest, context: Ctx
    ) -> empty_pb2.Empty:
        await self.app.delete_zone(request.name)
        return empty_pb2.Empty()

    async def SubscribeZone(
        self, request: audio_pb2.SubscribeZoneRequest, context: Ctx
    ) -> audio_pb2.Zone:
        return await self.app.subscribe_zone(request.name, request.stream)

    async def UnsubscribeZone(
        self, request: audio_pb2.UnsubscribeZoneRequest, context: Ctx
    ) -> audio_pb2.Zone:
        return await self.app.unsubscribe_zone(request.name)

    # -------------------------------------------------------------------- player

    async def GetPlayer(
        self, request: audio_pb2.GetPlayerRequest, context: Ctx
    ) -> audio_pb2.Player:
        player = self.app.configured_player()
        if player.reachable:
            return await player.refresh()
        return player.current

    async def ControlPlayer(
        self, request: audio_pb2.ControlPlayerRequest, context: Ctx
    ) -> audio_pb2.Player:
        Action = audio_pb2.ControlPlayerRequest.Action
        if request.action not in Action.values() or request.action == Action.ACTION_UNSPECIFIED:
            raise InvalidArgument("action", f"{request.action} is not a known action")
        if request.action == Action.ACTION_SET_VOLUME and not 0 <= request.volume <= 100:
            raise InvalidArgument("volume", f"{request.volume} is out of range (0-100)")
        return await self.app.configured_player().control(request.action, request.volume)

    # -------------------------------------------------------------- health, sync

    async def GetStreamHealth(
        self, request: audio_pb2.GetStreamHealthRequest, context: Ctx
    ) -> audio_pb2.StreamHealth:
        name = request.name
        if not name.endswith("/health"):
            raise InvalidArgument("name", f"{name[:80]!r} is not a streams/{{id}}/health name")
        return self.app.stream_health(name.removesuffix("/health"))

    async def MeasureSync(
        self, request: audio_pb2.MeasureSyncRequest, context: Ctx
    ) -> audio_pb2.SyncMeasurement:
        # The request's own fields first (no lookups for a malformed request).
        seconds = 3.0
        if request.HasField("duration"):
            seconds = duration_seconds("duration", request.duration, 2.0, 30.0)
        zone_a, zone_b = self.app.zone_pair(request.zone_a, request.zone_b)
        stream_name = request.stream or zone_a.stream
        if not stream_name:
            raise FailedPrecondition(f"zone_a: {zone_a.name} plays no stream; name one")
        return await self.app.measure_sync(zone_a, zone_b, stream_name, seconds)

    async def CalibrateSync(
        self, request: audio_pb2.CalibrateSyncRequest, context: Ctx
    ) -> audio_pb2.SyncCalibration:
        tolerance = request.tolerance_ms or 2.0
        if not 0.5 <= tolerance <= 50.0:
            raise InvalidArgument("tolerance_ms", f"{tolerance} is out of range (0.5-50)")
        rounds = request.max_rounds or 3
        if not 1 <= rounds <= 10:
            raise InvalidArgument("max_rounds", f"{rounds} is out of range (1-10)")
        zone_a, zone_b = self.app.zone_pair(request.zone_a, request.zone_b)
        stream_name = request.stream or zone_a.stream
        if not stream_name:
            raise FailedPrecondition(f"zone_a: {zone_a.name} plays no stream; name one")
        return await self.app.calibrate_sync(zone_a, zone_b, stream_name, tolerance, rounds)

    async def WatchAudio(
        self, request: audio_pb2.WatchAudioRequest, context: Ctx
    ) -> AsyncIterator[audio_pb2.AudioEvent]:
        async with self.app.events.subscribe() as sub:
            yield self.app.current_event()
            try:
                async for event in sub:
                    yield event
            except Lagged:
                await context.abort(grpc.StatusCode.ABORTED, "watcher fell behind; watch again")
