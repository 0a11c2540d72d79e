"""Converge the station's and every zone's PulseAudio to the desired state.

One pass per target (the station, each zone) runs whenever the desired state changes,
PulseAudio reports an event (a module unloaded by hand, a restart), or every
``reconcile_interval_seconds``. A pass reads the server's modules and loads/unloads only
what differs, so it is idempotent. Ownership is recognisable from module arguments:
senders carry ``stream_name=hearth-<stream>``, sinks created for streams carry
``sink_properties=hearth.stream=<stream>``; a zone is dedicated to hearth, so every
``module-rtp-recv`` on it is managed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulsectl

from hearth.audio.v1 import audio_pb2
from hearth_audio.model import Desired, latency_ms, stream_id
from hearth_audio.pulse import PulseLink, PulseUnreachable, format_args, parse_args
from hearth_runtime.logs import kv
from hearth_runtime.supervisor import Supervisor

log = logging.getLogger("hearth.audio.reconcile")

SENDER_TAG = "hearth-"
SINK_TAG = "hearth.stream="
STATION = "station"


@dataclass
class ZoneObserved:
    reachable: bool = False
    receiving: bool = False
    latency: float = 0.0
    error: str = "not contacted yet"
    last_contact: float = 0.0
    receiver: int | None = None
    subscribed_since: float = 0.0
    default_sink: str = ""


@dataclass
class StationObserved:
    reachable: bool = False
    error: str = "not contacted yet"
    senders: dict[str, int] = field(default_factory=dict)  # stream id -> module index
    sinks: dict[str, str] = field(default_factory=dict)  # stream id -> sink it plays into


def _sender_args(stream: audio_pb2.Stream, source: str, loop: bool) -> dict[str, str]:
    return {
        "source": source,
        "destination_ip": stream.group,
        "port": str(stream.port),
        "ttl": str(stream.ttl or 1),
        "rate": "48000",
        "channels": "2",
        "format": "s16be",
        "loop": "1" if loop else "0",
        "inhibit_auto_suspend": "always",
        "stream_name": SENDER_TAG + stream_id(stream.name),
    }


def station_pass(
    pulse: pulsectl.Pulse, streams: list[audio_pb2.Stream], loop: bool
) -> tuple[list[str], dict[str, int], dict[str, str]]:
    """Make the station send exactly the enabled ``streams``; (actions, senders, sinks)."""
    actions: list[str] = []
    wanted = {stream_id(s.name): s for s in streams}
    modules = pulse.module_list()
    # Sinks we created for streams that are no longer enabled go away.
    for m in modules:
        if m.name == "module-null-sink":
            props = parse_args(m.argument).get("sink_properties", "")
            if props.startswith(SINK_TAG) and props[len(SINK_TAG) :] not in wanted:
                pulse.module_unload(m.index)
                actions.append("unload_sink")
    sink_names = {s.name for s in pulse.sink_list()}
    source_names = {s.name for s in pulse.source_list()}
    desired_args: dict[str, dict[str, str]] = {}
    sinks: dict[str, str] = {}
    for sid, stream in wanted.items():
        source = stream.source
        if source in source_names and not source.endswith(".monitor"):
            desired_args[sid] = _sender_args(stream, source, loop)
            continue
        sink = source.removesuffix(".monitor")
        if sink not in sink_names:
            pulse.module_load(
                "module-null-sink",
                format_args({"sink_name": sink, "sink_properties": SINK_TAG + sid}),
            )
            actions.append("load_sink")
        sinks[sid] = sink
        desired_args[sid] = _sender_args(stream, f"{sink}.monitor", loop)
    senders: dict[str, int] = {}
    for m in pulse.module_list():
        if m.name != "module-rtp-send":
            continue
        args = parse_args(m.argument)
        name = args.get("stream_name", "")
        if not name.startswith(SENDER_TAG):
            continue  # not ours
        sid = name[len(SENDER_TAG) :]
        if desired_args.get(sid) == args and sid not in senders:
            senders[sid] = m.index
        else:
            pulse.module_unload(m.index)
            actions.append("unload_sender")
    for sid, args in desired_args.items():
        if sid not in senders:
            senders[sid] = pulse.module_load("module-rtp-send", format_args(args))
            actions.append("load_sender")
    return actions, senders, sinks


def zone_pass(
    pulse: pulsectl.Pulse, zone: audio_pb2.Zone, group: str | None
) -> tuple[list[str], bool, ZoneObserved]:
    """Hold exactly one receiver for ``group`` (none if None), apply volume and mute."""
    actions: list[str] = []
    want: dict[str, str] | None = None
    if group:
        want = {"sap_address": group, "latency_msec": str(latency_ms(zone))}
        if zone.sink:
            want["sink"] = zone.sink
    keep: int | None = None
    for m in pulse.module_list():
        if m.name != "module-rtp-recv":
            continue
        if want is not None and keep is None and parse_args(m.argument) == want:
            keep = m.index
            continue
        pulse.module_unload(m.index)
        actions.append("unload_receiver")
    loaded = False
    if want is not None and keep is None:
        keep = pulse.module_load("module-rtp-recv", format_args(want))
        actions.append("load_receiver")
        loaded = True
    default_sink = pulse.server_info().default_sink_name
    obs = ZoneObserved(reachable=True, error="", last_contact=time.time(), receiver=keep)
    obs.default_sink = default_sink
    try:
        sink = pulse.get_sink_by_name(zone.sink or default_sink)
    except pulsectl.PulseIndexError:
        obs.error = f"sink {zone.sink or default_sink!r} not found on {zone.server}"
        return actions, loaded, obs
    volume = zone.volume if zone.HasField("volume") else 1.0
    if abs(sink.volume.value_flat - volume) > 0.005:
        pulse.volume_set_all_chans(sink, volume)
        actions.append("set_volume")
    if bool(sink.mute) != zone.muted:
        pulse.mute(sink, zone.muted)
        actions.append("set_mute")
    if keep is not None:
        for si in pulse.sink_input_list():
            if si.owner_module == keep:
                obs.receiving = not si.corked
                obs.latency = (si.buffer_usec + si.sink_usec) / 1e6
    return actions, loaded, obs


class Reconciler:
    """Owns the PulseAudio links and the per-target convergence loops."""

    def __init__(
        self,
        desired: Desired,
        station_server: str,
        sender_loop: bool,
        interval: float,
        retry_max: float,
        supervisor: Supervisor,
        on_action: Callable[[str, str], None],
        on_changed: Callable[[str], None],
        on_receiver_loaded: Callable[[str, str], None],
    ) -> None:
        self.desired = desired
        self.station_server = station_server
        self.sender_loop = sender_loop
        self.interval = interval
        self.retry_max = retry_max
        self.supervisor = supervisor
        self.station = StationObserved()
        self.zones: dict[str, ZoneObserved] = {}
        self.links: dict[str, PulseLink] = {}
        self._on_action = on_action
        self._on_changed = on_changed
        self._on_receiver_loaded = on_receiver_loaded
        self._wake: dict[str, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    # ------------------------------------------------------------------ targets

    def start(self) -> None:
        if self.station_server:
            self._add_target(STATION, self.station_server)
        for zid, zone in self.desired.zones.items():
            self._add_target(zid, zone.server)

    def _add_target(self, key: str, server: str) -> None:
        loop = asyncio.get_running_loop()
        old = self.links.pop(key, None)
        if old is not None:  # a target added twice (a quarantined zone fixed) has one link
            old.close()
        self._wake[key] = asyncio.Event()
        self._locks.setdefault(key, asyncio.Lock())
        if key != STATION:
            self.zones.setdefault(key, ZoneObserved())
        self.links[key] = PulseLink(
            server,
            key,
            loop,
            on_event=lambda: self.trigger(key),
            on_state=lambda ok, err: self._link_state(key, ok, err),
            retry_max=self.retry_max,
            supervisor=self.supervisor,
        ).start()
        # One loop per target, supervised: a crash is logged, counted and restarted.
        self._tasks[key] = self.supervisor.spawn(
            lambda: self._loop(key), f"reconcile-{key}", family="audio-reconcile"
        )

    async def _remove_target(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task:
            self.supervisor.cancel(f"reconcile-{key}")
            with contextlib.suppress(asyncio.CancelledError):
                await task
        link = self.links.pop(key, None)
        if link:
            link.close()
        self._wake.pop(key, None)

    async def zone_added(self, zid: str) -> None:
        self._add_target(zid, self.desired.zones[zid].server)
        await self.converge(zid)

    async def zone_server_changed(self, zid: str) -> None:
        await self._remove_target(zid)
        self.zones[zid] = ZoneObserved()
        await self.zone_added(zid)

    async def zone_removed(self, zid: str, zone: audio_pb2.Zone) -> None:
        """Unload the zone's receiver (best effort), then forget the zone."""
        link = self.links.get(zid)
        if link is not None:
            with contextlib.suppress(Exception):
                async with self._locks[zid]:
                    empty = audio_pb2.Zone()
                    empty.CopyFrom(zone)
                    await link.call(lambda p: zone_pass(p, empty, None))
        await self._remove_target(zid)
        self.zones.pop(zid, None)

    async def close(self) -> None:
        for key in list(self._tasks):
            await self._remove_target(key)

    def trigger(self, key: str) -> None:
        event = self._wake.get(key)
        if event is not None:
            event.set()

    def trigger_all(self) -> None:
        for event in self._wake.values():
            event.set()

    def _link_state(self, key: str, ok: bool, error: str) -> None:
        if key == STATION:
            self.station.reachable, self.station.error = ok, error
            if not ok:
                self.station.senders.clear()
        elif key in self.zones:
            obs = self.zones[key]
            if not ok:
                self.zones[key] = ZoneObserved(
                    error=error,
                    last_contact=obs.last_contact,
                    subscribed_since=obs.subscribed_since,
                )
        self._on_changed(key)
        if ok:
            self.trigger(key)

    # ------------------------------------------------------------------- passes

    async def _loop(self, key: str) -> None:
        event = self._wake[key]
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self.interval)
            await asyncio.sleep(0.05)  # gather a burst of events into one pass
            event.clear()
            await self.converge(key)

    async def converge(self, key: str) -> None:
        """One pass for ``key`` now; errors are recorded, never raised."""
        link = self.links.get(key)
        if link is None:
            return
        async with self._locks[key]:
            try:
                if key == STATION:
                    await self._station(link)
                else:
                    await self._zone(key, link)
            except PulseUnreachable:
                pass  # the link reports its state itself
            except Exception as exc:
                log.warning("reconcile pass failed", extra=kv(target=key, err=exc))
                if key in self.zones:
                    self.zones[key].error = str(exc)
                else:
                    self.station.error = str(exc)
                self._on_changed(key)

    async def _station(self, link: PulseLink) -> None:
        streams = [s for s in self.desired.streams.values() if s.enabled]
        actions, senders, sinks = await link.call(
            lambda p: station_pass(p, streams, self.sender_loop)
        )
        for action in actions:
            self._on_action(STATION, action)
        if actions:
            log.info("station converged", extra=kv(actions=",".join(actions)))
        changed = senders != self.station.senders or bool(self.station.error)
        self.station.senders, self.station.sinks = senders, sinks
        self.station.reachable, self.station.error = True, ""
        if changed or actions:
            self._on_changed(STATION)

    async def _zone(self, zid: str, link: PulseLink) -> None:
        zone = self.desired.zones.get(zid)
        if zone is None:
            return
        group = None
        if zone.stream and stream_id(zone.stream) in self.desired.streams:
            group = self.desired.streams[stream_id(zone.stream)].group
        actions, loaded, obs = await link.call(lambda p: zone_pass(p, zone, group))
        for action in actions:
            self._on_action(zid, action)
        if loaded and zone.stream:
            self._on_receiver_loaded(zid, zone.stream)
        if actions:
            log.info("zone converged", extra=kv(zone=zid, actions=",".join(actions)))
        old = self.zones.get(zid, ZoneObserved())
        obs.subscribed_since = old.subscribed_since if not loaded else time.time()
        if group is None:
            obs.subscribed_since = 0.0
        elif not obs.subscribed_since:
            obs.subscribed_since = time.time()
        self.zones[zid] = obs
        if (old.reachable, old.receiving, old.error) != (obs.reachable, obs.receiving, obs.error):
            self._on_changed(zid)
