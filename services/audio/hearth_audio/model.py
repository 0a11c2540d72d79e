"""Desired state: validated streams and zones, persisted in SQLite.

Only what the user asked for is stored (OUTPUT_ONLY status fields are cleared before
saving); what PulseAudio actually does is the reconciler's business.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from hearth.audio.v1 import audio_pb2
from hearth_audio.config import check_pulse_server
from hearth_runtime import AlreadyExists, InvalidArgument
from hearth_runtime.errors import not_found
from hearth_runtime.store import Store

MIGRATIONS = [
    """
    CREATE TABLE streams (id TEXT PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE zones (id TEXT PRIMARY KEY, data BLOB NOT NULL);
    """,
]

DEFAULT_PORT = 46000
DEFAULT_LATENCY_MS = 200
MIN_LATENCY_MS, MAX_LATENCY_MS = 20, 5000
MAX_VOLUME = 1.5
SAP_PORT = 9875
_PULSE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

STREAM_FIELDS = ("display_name", "source", "group", "port", "ttl", "enabled", "player_output")
ZONE_FIELDS = ("display_name", "server", "sink", "volume", "muted", "latency")


def stream_id(name: str) -> str:
    return name.removeprefix("streams/")


def zone_id(name: str) -> str:
    return name.removeprefix("zones/")


def latency_ms(zone: audio_pb2.Zone) -> int:
    if not zone.HasField("latency"):
        return DEFAULT_LATENCY_MS
    return round(zone.latency.seconds * 1000 + zone.latency.nanos / 1e6)


def check_pulse_name(field: str, value: str) -> None:
    if value and not _PULSE_NAME.match(value):
        raise InvalidArgument(field, f"{value!r} is not a PulseAudio sink/source name")


class Desired:
    """Streams and zones as the user wants them; every change is written through."""

    def __init__(self, store: Store, group_pool: str) -> None:
        self._store = store
        self._pool = ipaddress.IPv4Network(group_pool)
        self.streams: dict[str, audio_pb2.Stream] = {}
        self.zones: dict[str, audio_pb2.Zone] = {}
        for row in store.query("SELECT id, data FROM streams ORDER BY id"):
            self.streams[row["id"]] = audio_pb2.Stream.FromString(row["data"])
        for row in store.query("SELECT id, data FROM zones ORDER BY id"):
            self.zones[row["id"]] = audio_pb2.Zone.FromString(row["data"])

    # ------------------------------------------------------------------- streams

    def stream(self, name: str, field: str = "name") -> audio_pb2.Stream:
        sid = stream_id(name)
        if not name.startswith("streams/") or sid not in self.streams:
            if not name.startswith("streams/"):
                raise InvalidArgument(field, f"{name!r} is not a streams/{{id}} resource name")
            raise not_found("stream", name)
        return self.streams[sid]

    def zone(self, name: str, field: str = "name") -> audio_pb2.Zone:
        zid = zone_id(name)
        if not name.startswith("zones/") or zid not in self.zones:
            if not name.startswith("zones/"):
                raise InvalidArgument(field, f"{name!r} is not a zones/{{id}} resource name")
            raise not_found("zone", name)
        return self.zones[zid]

    def allocate_group(self) -> str:
        used = {s.group for s in self.streams.values()}
        for addr in self._pool.hosts():
            if str(addr) not in used:
                return str(addr)
        raise InvalidArgument("stream.group", f"no free group left in {self._pool}")

    def normalise_stream(self, stream: audio_pb2.Stream, sid: str) -> audio_pb2.Stream:
        """Defaults filled in and every field checked (INVALID_ARGUMENT / ALREADY_EXISTS)."""
        out = audio_pb2.Stream()
        out.CopyFrom(stream)
        out.name = f"streams/{sid}"
        out.ClearField("state")
        if not out.source:
            out.source = sid
        check_pulse_name("stream.source", out.source)
        if not out.group:
            out.group = self.allocate_group()
        try:
            group = ipaddress.IPv4Address(out.group)
        except ValueError:
            raise InvalidArgument("stream.group", f"{out.group!r} is not an IPv4 address") from None
        if not group.is_multicast:
            raise InvalidArgument(
                "stream.group", f"{out.group} is outside the multicast range 224.0.0.0/4"
            )
        if out.port == 0:
            out.port = DEFAULT_PORT
        if not 1024 <= out.port <= 65535 or out.port == SAP_PORT:
            raise InvalidArgument(
                "stream.port", f"{out.port} is out of range (1024-65535, not {SAP_PORT})"
            )
        if out.port % 2:
            raise InvalidArgument("stream.port", f"{out.port} is odd; RTP uses even ports")
        if out.ttl == 0:
            out.ttl = 1
        if not 1 <= out.ttl <= 255:
            raise InvalidArgument("stream.ttl", f"{out.ttl} is out of range (1-255)")
        for other in self.streams.values():
            if other.name != out.name and (other.group, other.port) == (out.group, out.port):
                raise AlreadyExists(
                    f"stream.group: {out.group}:{out.port} is already used by {other.name}",
                    metadata={"resource": other.name, "field": "stream.group"},
                )
        return out

    def put_stream(self, stream: audio_pb2.Stream) -> None:
        sid = stream_id(stream.name)
        clean = audio_pb2.Stream()
        clean.CopyFrom(stream)
        clean.ClearField("state")
        self._store.execute(
            "INSERT OR REPLACE INTO streams (id, data) VALUES (?, ?)",
            (sid, clean.SerializeToString()),
        )
        self.streams[sid] = clean

    def delete_stream(self, sid: str) -> None:
        self._store.execute("DELETE FROM streams WHERE id = ?", (sid,))
        self.streams.pop(sid, None)

    # --------------------------------------------------------------------- zones

    def normalise_zone(self, zone: audio_pb2.Zone, zid: str) -> audio_pb2.Zone:
        out = audio_pb2.Zone()
        out.CopyFrom(zone)
        out.name = f"zones/{zid}"
        out.ClearField("status")
        if not out.server:
            raise InvalidArgument("zone.server", "must not be empty (tcp:host:4713 or unix:/path)")
        try:
            check_pulse_server(out.server)
        except ValueError as exc:
            raise InvalidArgument("zone.server", str(exc)) from None
        check_pulse_name("zone.sink", out.sink)
        if not 0.0 <= out.volume <= MAX_VOLUME:
            raise InvalidArgument("zone.volume", f"{out.volume} is out of range (0.0-1.5)")
        if not out.HasField("latency"):
            out.latency.FromMilliseconds(DEFAULT_LATENCY_MS)
        ms = latency_ms(out)
        if not MIN_LATENCY_MS <= ms <= MAX_LATENCY_MS:
            raise InvalidArgument(
                "zone.latency", f"{ms} ms is out of range ({MIN_LATENCY_MS}-{MAX_LATENCY_MS} ms)"
            )
        if out.stream:
            self.stream(out.stream, "zone.stream")
        return out

    def put_zone(self, zone: audio_pb2.Zone) -> None:
        zid = zone_id(zone.name)
        clean = audio_pb2.Zone()
        clean.CopyFrom(zone)
        clean.ClearField("status")
        self._store.execute(
            "INSERT OR REPLACE INTO zones (id, data) VALUES (?, ?)",
            (zid, clean.SerializeToString()),
        )
        self.zones[zid] = clean

    def delete_zone(self, zid: str) -> None:
        self._store.execute("DELETE FROM zones WHERE id = ?", (zid,))
        self.zones.pop(zid, None)

    def zones_on(self, stream_name: str) -> Iterable[audio_pb2.Zone]:
        return [z for z in self.zones.values() if z.stream == stream_name]
