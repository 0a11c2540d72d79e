"""The audio service put together: desired state, reconciler, health monitor, player, sync."""

from __future__ import annotations

import asyncio
import logging
import time

from google.protobuf import field_mask_pb2

from hearth.audio.v1 import audio_pb2
from hearth_audio import metrics, sync
from hearth_audio.config import AudioConfig
from hearth_audio.model import (
    MAX_LATENCY_MS,
    MAX_STREAMS,
    MAX_ZONES,
    MIGRATIONS,
    MIN_LATENCY_MS,
    STREAM_FIELDS,
    ZONE_FIELDS,
    Desired,
    latency_ms,
    stream_id,
    zone_id,
)
from hearth_audio.monitor import HealthMonitor, Snapshot
from hearth_audio.player import Player
from hearth_audio.reconcile import STATION, Reconciler
from hearth_runtime import FailedPrecondition, InvalidArgument, Runtime, Unavailable
from hearth_runtime.broadcast import Broadcaster
from hearth_runtime.errors import AlreadyExists, ResourceExhausted
from hearth_runtime.logs import kv
from hearth_runtime.resources import apply_update_mask
from hearth_runtime.store import Store, state_file
from hearth_runtime.supervisor import Supervisor
from hearth_runtime.text import neutral
from hearth_runtime.timeconv import (
    duration_from_seconds,
    seconds_of,
    timestamp_from_epoch,
    timestamp_now,
)

log = logging.getLogger("hearth.audio")

Event = audio_pb2.AudioEvent


class AudioApp:
    """Everything behind the gRPC face; one per process."""

    def __init__(self, config: AudioConfig, runtime: Runtime[AudioConfig] | None = None) -> None:
        self.config = config
        self.runtime = runtime
        # Every background task and thread runs under the runtime's supervisor (a private
        # one when the service is built without a runtime, e.g. in-process tests).
        self.supervisor = runtime.supervisor if runtime is not None else Supervisor()
        self.store = Store(state_file(config.state_dir, "audio"), MIGRATIONS)
        self.desired = Desired(self.store, config.group_pool)
        self.events: Broadcaster[audio_pb2.AudioEvent] = Broadcaster()
        self.monitor = HealthMonitor(asyncio.get_running_loop(), config.multicast_interface)
        self.reconciler = Reconciler(
            self.desired,
            config.station_server,
            config.sender_loop,
            config.reconcile_interval_seconds,
            config.retry_max_seconds,
            self.supervisor,
            on_action=lambda target, action: metrics.RECONCILE_ACTIONS.labels(target, action).inc(),
            on_changed=self._target_changed,
            on_receiver_loaded=self._receiver_loaded,
        )
        self.player = (
            Player(config.mpd_address, self._player_changed, config.retry_max_seconds)
            if config.mpd_address
            else None
        )
        self.health: dict[str, audio_pb2.StreamHealth] = {}
        self._counted: dict[str, tuple[int, int]] = {}
        self._zone_status: dict[str, tuple[bool, bool, bool, str]] = {}
        self._subscribed_labels: dict[str, str] = {}
        self._serving: bool | None = None
        self._health_failed: dict[str, float] = {}  # stream -> when its failure was logged

    async def start(self) -> None:
        self.reconciler.start()
        for sid, stream in self.desired.streams.items():
            self.monitor.watch(sid, stream.group, stream.port)
        if self.runtime is None:
            return
        self.runtime.spawn(self.health_loop, "audio-health")
        if self.player is not None:
            self.runtime.spawn(self.player.run, "audio-player")
        # Unknown until the station and the player answered: start NOT_SERVING, let them say.
        if self.config.station_server or self.player is not None:
            await self.runtime.set_serving(False)

    async def close(self) -> None:
        if self.runtime is None:
            await self.supervisor.close()
        await self.reconciler.close()
        self.monitor.close()
        self.store.close()

    # --------------------------------------------------------------- conversions

    def stream_view(self, stream: audio_pb2.Stream) -> audio_pb2.Stream:
        out = audio_pb2.Stream()
        out.CopyFrom(stream)
        sid = stream_id(stream.name)
        bad = self.desired.bad_streams.get(sid)
        if bad is not None and sid not in self.desired.streams:
            out.state = audio_pb2.STREAM_STATE_QUARANTINED
            out.problem = bad[1]
        elif not stream.enabled:
            out.state = audio_pb2.STREAM_STATE_DISABLED
        elif sid in self.reconciler.station.senders:
            out.state = audio_pb2.STREAM_STATE_SENDING
        else:
            out.state = audio_pb2.STREAM_STATE_DEGRADED
        return out

    def zone_view(self, zone: audio_pb2.Zone) -> audio_pb2.Zone:
        out = audio_pb2.Zone()
        out.CopyFrom(zone)
        bad = self.desired.bad_zones.get(zone_id(zone.name))
        if bad is not None and zone_id(zone.name) not in self.desired.zones:
            out.problem = out.status.error = bad[1]
            return out
        obs = self.reconciler.zones.get(zone_id(zone.name))
        if obs is not None:
            st = out.status
            st.reachable = obs.reachable
            st.receiving = obs.receiving
            st.stalled = self._stalled(zone)
            st.latency.CopyFrom(duration_from_seconds(obs.latency))
            st.error = obs.error
            if obs.last_contact:
                st.last_contact.CopyFrom(timestamp_from_epoch(obs.last_contact))
        return out

    def _stalled(self, zone: audio_pb2.Zone) -> bool:
        """The zone's stream is live (packets arrive) but the zone plays nothing."""
        obs = self.reconciler.zones.get(zone_id(zone.name))
        if obs is None or not obs.reachable or obs.receiving or not zone.stream:
            return False
        health = self.health.get(stream_id(zone.stream))
        live = health is not None and health.up
        waited = time.time() - obs.subscribed_since if obs.subscribed_since else 0.0
        return live and waited > self.config.stall_after_seconds

    def current_event(self) -> audio_pb2.AudioEvent:
        event = Event(kind=Event.KIND_CURRENT, time=timestamp_now())
        event.streams.extend(self.stream_view(s) for s in self.desired.streams.values())
        event.zones.extend(self.zone_view(z) for z in self.desired.zones.values())
        event.player.CopyFrom(self.player_view())
        event.health.extend(self.health_for(sid) for sid in self.desired.streams)
        return event

    def player_view(self) -> audio_pb2.Player:
        return self.player.current if self.player else audio_pb2.Player(reachable=False)

    # ------------------------------------------------------------------ callbacks

    def publish(self, kind: int, **fields: object) -> None:
        event = Event(kind=kind, time=timestamp_now())  # type: ignore[arg-type]
        for key, value in fields.items():
            if isinstance(value, list):
                getattr(event, key).extend(value)
            else:
                getattr(event, key).CopyFrom(value)
        self.events.publish(event)

    def _target_changed(self, key: str) -> None:
        if key == STATION:
            metrics.STATION_UP.set(1 if self.reconciler.station.reachable else 0)
            for stream in self.desired.streams.values():
                self.publish(Event.KIND_STREAM_CHANGED, streams=[self.stream_view(stream)])
        elif key in self.desired.zones:
            obs = self.reconciler.zones.get(key)
            metrics.ZONE_UP.labels(key).set(1 if obs and obs.reachable else 0)
            self.publish(Event.KIND_ZONE_CHANGED, zones=[self.zone_view(self.desired.zones[key])])
        self._spawn_update_serving()

    def _spawn_update_serving(self) -> None:
        # A later change supersedes an earlier one still running (same name: the supervisor
        # cancels the old task); update_serving only records what it published.
        if self.runtime is not None:
            self.supervisor.spawn(self.update_serving, "audio-serving", restart=False)

    def _player_changed(self, player: audio_pb2.Player) -> None:
        metrics.PLAYER_UP.set(1 if player.reachable else 0)
        self.publish(Event.KIND_PLAYER_CHANGED, player=player)
        self._spawn_update_serving()

    def _receiver_loaded(self, zid: str, stream_name: str) -> None:
        """Send the group's last SAP announcement at once: the receiver starts now."""
        stream = self.desired.streams.get(stream_id(stream_name))
        if self.config.resend_sap and stream is not None:
            sent = self.monitor.resend_sap(stream_id(stream_name), stream.ttl or 1)
            log.info("receiver loaded", extra=kv(zone=zid, stream=stream_name, sap_resent=sent))

    async def update_serving(self) -> None:
        """NOT_SERVING while the station or the player (if configured) is unreachable."""
        if self.runtime is None:
            return
        ok = True
        if self.config.station_server and not self.reconciler.station.reachable:
            ok = False
        if self.player is not None and not self.player.reachable:
            ok = False
        if ok != self._serving:
            await self.runtime.set_serving(ok)
            self._serving = ok  # only once published: a cancelled run is redone in full

    # -------------------------------------------------------------------- health

    def health_for(self, sid: str) -> audio_pb2.StreamHealth:
        found = self.health.get(sid)
        if found is not None:
            return found
        return audio_pb2.StreamHealth(name=f"streams/{sid}/health")

    def _health_message(self, sid: str, snap: Snapshot | None) -> audio_pb2.StreamHealth:
        out = audio_pb2.StreamHealth(name=f"streams/{sid}/health")
        if snap is None:
            return out
        out.up = snap.up
        out.packets, out.lost = snap.packets, snap.lost
        out.duplicates, out.reordered = snap.duplicates, snap.reordered
        out.loss_ratio = snap.loss_ratio
        out.jitter.CopyFrom(duration_from_seconds(snap.jitter))
        out.bitrate_bps = snap.bitrate
        if snap.last_packet_age is not None:
            out.last_packet_age.CopyFrom(duration_from_seconds(snap.last_packet_age))
        out.ssrc, out.ssrc_changes = snap.ssrc, snap.ssrc_changes
        if snap.sap_age is not None:
            out.sap_age.CopyFrom(duration_from_seconds(snap.sap_age))
        out.conflicts.extend(snap.conflicts)
        for reason, count in snap.rejected.items():
            out.rejected[reason] = count
        return out

    def compute_health(self, sid: str) -> tuple[audio_pb2.StreamHealth, Snapshot | None]:
        """``sid``'s health now; a failure is isolated to this stream: logged (once a
        minute per stream, with its traceback), counted in hearth_audio_health_errors_total,
        and reported in the message's conflicts instead of raised."""
        try:
            snap = self.monitor.snapshot(sid)
            return self._health_message(sid, snap), snap
        except Exception as exc:
            metrics.HEALTH_ERRORS.labels(sid).inc()
            now = time.monotonic()
            if now - self._health_failed.get(sid, -60.0) >= 60.0:
                self._health_failed[sid] = now
                log.exception("stream health failed", extra=kv(stream=sid))
            out = audio_pb2.StreamHealth(name=f"streams/{sid}/health")
            out.conflicts.append(
                neutral(f"health could not be computed: {type(exc).__name__}: {exc}", 200)
            )
            return out, None

    def refresh_health(self) -> None:
        for sid in self.desired.streams:
            msg, snap = self.compute_health(sid)
            self.health[sid] = msg
            packets, lost = self._counted.get(sid, (0, 0))
            if msg.packets >= packets:
                metrics.RTP_PACKETS.labels(sid).inc(msg.packets - packets)
            if msg.lost >= lost:
                metrics.RTP_LOST.labels(sid).inc(msg.lost - lost)
            self._counted[sid] = (max(msg.packets, packets), max(msg.lost, lost))
            metrics.RTP_JITTER.labels(sid).set(seconds_of(msg.jitter))
            if snap is not None and snap.last_packet_age is not None:
                metrics.RTP_AGE.labels(sid).set(snap.last_packet_age)
            metrics.STREAM_UP.labels(sid).set(1 if msg.up else 0)
        for zid, zone in self.desired.zones.items():
            obs = self.reconciler.zones.get(zid)
            metrics.ZONE_UP.labels(zid).set(1 if obs and obs.reachable else 0)
            metrics.ZONE_LATENCY.labels(zid).set(obs.latency if obs else 0.0)
            stalled = self._stalled(zone)
            metrics.ZONE_STALLED.labels(zid).set(1 if stalled else 0)
            self._subscribed_metric(zid, stream_id(zone.stream) if zone.stream else "")
            status = (
                bool(obs and obs.reachable),
                bool(obs and obs.receiving),
                stalled,
                obs.error if obs else "",
            )
            if self._zone_status.get(zid) != status:
                self._zone_status[zid] = status
                self.publish(Event.KIND_ZONE_CHANGED, zones=[self.zone_view(zone)])
        self.publish(Event.KIND_HEALTH, health=list(self.health.values()))

    def _subscribed_metric(self, zid: str, sid: str) -> None:
        old = self._subscribed_labels.get(zid)
        if old == sid:
            return
        if old:
            metrics.ZONE_SUBSCRIBED.remove(zid, old)
        if sid:
            metrics.ZONE_SUBSCRIBED.labels(zid, sid).set(1)
        self._subscribed_labels[zid] = sid

    async def health_loop(self) -> None:
        while True:
            try:
                self.refresh_health()
            except Exception:
                log.exception("health refresh failed")
            await asyncio.sleep(self.config.health_interval_seconds)

    # ------------------------------------------------------------------- streams

    async def stream_changed(self, sid: str) -> None:
        # Disabled streams are still listened to: their health shows the packets stop
        # (and anyone else still sending to the group).
        stream = self.desired.streams.get(sid)
        if stream is not None:
            self.monitor.watch(sid, stream.group, stream.port)
        else:
            self.monitor.unwatch(sid)
        await self.reconciler.converge(STATION)
        for zone in self.desired.zones_on(f"streams/{sid}"):
            self.reconciler.trigger(zone_id(zone.name))
        if stream is not None:
            self.publish(Event.KIND_STREAM_CHANGED, streams=[self.stream_view(stream)])

    # --------------------------------------------------------------------- sync

    async def measure_sync(
        self, zone_a: audio_pb2.Zone, zone_b: audio_pb2.Zone, stream_name: str, seconds: float
    ) -> audio_pb2.SyncMeasurement:
        stream = self.desired.stream(stream_name, "stream")
        sid = stream_id(stream.name)
        for field, zone in (("zone_a", zone_a), ("zone_b", zone_b)):
            if zone.stream != stream.name:
                raise FailedPrecondition(
                    f"{field}: {zone.name} does not play {stream.name}; subscribe it first",
                    metadata={"field": field},
                )
        if not stream.enabled:
            raise FailedPrecondition(f"{stream.name} is disabled")
        sink = self.reconciler.station.sinks.get(sid)
        if not sink:
            raise FailedPrecondition(
                f"{stream.name} is not fed by a sink on the station (source {stream.source!r}),"
                " so no test signal can be played into it"
            )
        devices = []
        for zone in (zone_a, zone_b):
            obs = self.reconciler.zones.get(zone_id(zone.name))
            if obs is None or not obs.reachable:
                raise Unavailable(f"{zone.name} is not reachable")
            devices.append((zone.server, f"{zone.sink or obs.default_sink}.monitor"))
        signal = sync.burst_signal()
        result = await asyncio.to_thread(
            sync.measure_offset,
            self.supervisor,
            devices,
            self.config.station_server,
            sink,
            signal,
            seconds,
        )
        a, b = zone_id(zone_a.name), zone_id(zone_b.name)
        metrics.SYNC_OFFSET.labels(a, b).set(result.offset_s)
        log.info(
            "sync measured",
            extra=kv(zone_a=a, zone_b=b, offset_ms=round(result.offset_s * 1e3, 2),
                     confidence=round(result.confidence, 3)),
        )  # fmt: skip
        return audio_pb2.SyncMeasurement(
            zone_a=zone_a.name,
            zone_b=zone_b.name,
            offset_ms=result.offset_s * 1e3,
            confidence=result.confidence,
            time=timestamp_now(),
        )

    async def calibrate_sync(
        self,
        zone_a: audio_pb2.Zone,
        zone_b: audio_pb2.Zone,
        stream_name: str,
        tolerance_ms: float,
        max_rounds: int,
    ) -> audio_pb2.SyncCalibration:
        """Measure; if zone_b is off by more than ``tolerance_ms``, shift its latency by
        the offset and measure again, at most ``max_rounds`` times.

        Changing the latency reloads zone_b's module-rtp-recv; a fresh receiver starts at
        its setting (within ~2 ms on a steady zone, docs/audio.md "Sync"), which is what makes
        this converge; the receiver's own slow rate control could not.
        """
        out = audio_pb2.SyncCalibration()
        zid = zone_id(zone_b.name)
        for done in range(max_rounds + 1):
            m = await self.measure_sync(zone_a, zone_b, stream_name, 3.0)
            out.measurements.append(m)
            if abs(m.offset_ms) <= tolerance_ms:
                out.converged = True
                break
            if done == max_rounds:
                break
            ms = latency_ms(zone_b) - round(m.offset_ms)
            if not MIN_LATENCY_MS <= ms <= MAX_LATENCY_MS:
                raise FailedPrecondition(
                    f"{zone_b.name} would need latency {ms} ms (range {MIN_LATENCY_MS}-"
                    f"{MAX_LATENCY_MS} ms); raise {zone_a.name}'s latency instead"
                )
            zone_b = audio_pb2.Zone()
            zone_b.CopyFrom(self.desired.zones[zid])
            zone_b.latency.FromMilliseconds(ms)
            self.desired.put_zone(zone_b)
            await self.reconciler.converge(zid)
            self.publish(Event.KIND_ZONE_CHANGED, zones=[self.zone_view(zone_b)])
            log.info("sync calibration", extra=kv(zone=zid, latency_ms=ms))
            await self._until_playing(zid, ms / 1e3)
        out.zone_b.CopyFrom(self.zone_view(self.desired.zones[zid]))
        return out

    async def _until_playing(self, zid: str, latency: float, within: float = 15.0) -> None:
        """Wait until zone ``zid``'s new receiver plays (its buffer filled), or raise."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await self.reconciler.converge(zid)
            obs = self.reconciler.zones.get(zid)
            if obs is not None and obs.receiving:
                # Its buffer fills in ``latency``; then it holds still for the next few
                # seconds (measured 4 and 7 s after a start: within 0.2 ms), not before.
                await asyncio.sleep(latency + sync.SESSION_SETTLE_S)
                return
            await asyncio.sleep(0.2)
        raise Unavailable(f"zones/{zid}: receiver did not start within {within:g} s")

    # ------------------------------------------------ streams and zones, by name

    async def create_stream(self, sid: str, stream: audio_pb2.Stream) -> audio_pb2.Stream:
        if sid in self.desired.streams or sid in self.desired.bad_streams:
            raise AlreadyExists(f"stream streams/{sid} already exists")
        if len(self.desired.streams) + len(self.desired.bad_streams) >= MAX_STREAMS:
            raise ResourceExhausted(f"at most {MAX_STREAMS} streams")
        return await self._put_stream(self.desired.normalise_stream(stream, sid))

    async def _put_stream(self, stream: audio_pb2.Stream) -> audio_pb2.Stream:
        """Store ``stream``, converge on it; its view."""
        self.desired.put_stream(stream)
        await self.stream_changed(stream_id(stream.name))
        return self.stream_view(stream)

    def get_stream(self, name: str) -> audio_pb2.Stream:
        return self.stream_view(self.desired.stream(name, quarantined=True))

    def list_streams(self) -> list[audio_pb2.Stream]:
        stored = {
            **{k: v for k, (v, _) in self.desired.bad_streams.items()},
            **self.desired.streams,
        }
        return [self.stream_view(stored[k]) for k in sorted(stored)]

    async def update_stream(
        self, patch: audio_pb2.Stream, mask: field_mask_pb2.FieldMask
    ) -> audio_pb2.Stream:
        """Stream ``patch.name`` gets ``mask``'s fields from ``patch``."""
        current = self.desired.stream(patch.name, "stream.name", quarantined=True)
        patched = apply_update_mask(current, patch, mask, STREAM_FIELDS, "stream")
        return await self._put_stream(
            self.desired.normalise_stream(patched, stream_id(current.name))
        )

    async def delete_stream(self, name: str) -> None:
        stream = self.desired.stream(name, quarantined=True)
        users = [z.name for z in self.desired.zones_on(stream.name)]
        if users:
            raise FailedPrecondition(
                f"{stream.name} is still patched to {', '.join(users)}; unsubscribe them first",
                metadata={"resource": stream.name},
            )
        sid = stream_id(stream.name)
        self.desired.delete_stream(sid)
        await self.stream_changed(sid)
        self.health.pop(sid, None)
        metrics.forget_stream(sid)
        self.publish(Event.KIND_STREAM_DELETED, streams=[stream])

    async def set_stream_enabled(self, name: str, enabled: bool) -> audio_pb2.Stream:
        if stream_id(name) in self.desired.bad_streams and name.startswith("streams/"):
            raise FailedPrecondition(
                f"{name[:80]} is quarantined ({self.desired.bad_streams[stream_id(name)][1]});"
                " fix it with UpdateStream or delete it",
                metadata={"resource": name[:80]},
            )
        stream = audio_pb2.Stream()
        stream.CopyFrom(self.desired.stream(name))
        stream.enabled = enabled
        return await self._put_stream(stream)

    async def create_zone(self, zid: str, zone: audio_pb2.Zone) -> audio_pb2.Zone:
        if zid in self.desired.zones or zid in self.desired.bad_zones:
            raise AlreadyExists(f"zone zones/{zid} already exists")
        if len(self.desired.zones) + len(self.desired.bad_zones) >= MAX_ZONES:
            raise ResourceExhausted(f"at most {MAX_ZONES} zones")
        zone = self.desired.normalise_zone(zone, zid)
        if not zone.HasField("volume"):
            zone.volume = 1.0
        self.desired.put_zone(zone)
        await self.reconciler.zone_added(zid)
        view = self.zone_view(zone)
        self.publish(Event.KIND_ZONE_CHANGED, zones=[view])
        return view

    def get_zone(self, name: str) -> audio_pb2.Zone:
        return self.zone_view(self.desired.zone(name, quarantined=True))

    def list_zones(self) -> list[audio_pb2.Zone]:
        stored = {**{k: v for k, (v, _) in self.desired.bad_zones.items()}, **self.desired.zones}
        return [self.zone_view(stored[k]) for k in sorted(stored)]

    async def update_zone(
        self, patch: audio_pb2.Zone, mask: field_mask_pb2.FieldMask
    ) -> audio_pb2.Zone:
        current = self.desired.zone(patch.name, "zone.name", quarantined=True)
        zid = zone_id(current.name)
        patched = apply_update_mask(current, patch, mask, ZONE_FIELDS, "zone")
        zone = self.desired.normalise_zone(patched, zid)
        was_quarantined = zid not in self.desired.zones
        self.desired.put_zone(zone)
        if was_quarantined:  # fixed: from now on it is reconciled like any zone
            await self.reconciler.zone_added(zid)
            return await self._zone_changed(zid)
        return await self._zone_changed(zid, server_changed=zone.server != current.server)

    async def delete_zone(self, name: str) -> None:
        zone = self.desired.zone(name, quarantined=True)
        zid = zone_id(zone.name)
        self.desired.delete_zone(zid)
        await self.reconciler.zone_removed(zid, zone)
        metrics.forget_zone(zid)
        self._subscribed_metric(zid, "")
        self._zone_status.pop(zid, None)
        self.publish(Event.KIND_ZONE_DELETED, zones=[zone])

    async def subscribe_zone(self, name: str, stream_name: str) -> audio_pb2.Zone:
        """Patch zone ``name`` to stream ``stream_name``."""
        zone = audio_pb2.Zone()
        zone.CopyFrom(self.desired.zone(name))
        if not stream_name:
            raise InvalidArgument("stream", "must name a stream (streams/{id})")
        zone.stream = self.desired.stream(stream_name, "stream").name
        self.desired.put_zone(zone)
        return await self._zone_changed(zone_id(zone.name))

    async def unsubscribe_zone(self, name: str) -> audio_pb2.Zone:
        zone = audio_pb2.Zone()
        zone.CopyFrom(self.desired.zone(name))
        zone.stream = ""
        self.desired.put_zone(zone)
        return await self._zone_changed(zone_id(zone.name))

    async def _zone_changed(self, zid: str, server_changed: bool = False) -> audio_pb2.Zone:
        if server_changed:
            await self.reconciler.zone_server_changed(zid)
        else:
            await self.reconciler.converge(zid)
        view = self.zone_view(self.desired.zones[zid])
        self.publish(Event.KIND_ZONE_CHANGED, zones=[view])
        return view

    def zone_pair(self, name_a: str, name_b: str) -> tuple[audio_pb2.Zone, audio_pb2.Zone]:
        """The two distinct zones a sync request names (zone_a, zone_b)."""
        zone_a = self.desired.zone(name_a, "zone_a")
        zone_b = self.desired.zone(name_b, "zone_b")
        if zone_a.name == zone_b.name:
            raise InvalidArgument("zone_b", "must differ from zone_a")
        return zone_a, zone_b

    def stream_health(self, name: str) -> audio_pb2.StreamHealth:
        """The health of stream ``name`` now."""
        stream = self.desired.stream(name)
        return self.compute_health(stream_id(stream.name))[0]

    def configured_player(self) -> Player:
        if self.player is None:
            raise FailedPrecondition("no player configured (set HEARTH_AUDIO_MPD_ADDRESS)")
        return self.player
