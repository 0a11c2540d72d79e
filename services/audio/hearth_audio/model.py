"""Desired state: validated streams and zones, persisted in SQLite.

Only what the user asked for is stored (OUTPUT_ONLY status fields are cleared before
saving); what PulseAudio actually does is the reconciler's business.

A stored stream or zone that cannot be read or no longer passes validation (written by an
older version, edited by hand, a damaged file) never stops the service: it is
*quarantined* - kept aside in ``bad_streams``/``bad_zones`` with the reason, logged, counted
in ``hearth_audio_quarantined{kind}``, shown by Get/List (state QUARANTINED, ``problem``),
never sent, watched or reconciled, and fixed with Update or removed with Delete.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Iterable

from google.protobuf.message import DecodeError
from prometheus_client import Gauge

from hearth.audio.v1 import audio_pb2
from hearth_audio.config import check_pulse_server
from hearth_runtime import AlreadyExists, InvalidArgument
from hearth_runtime.errors import HearthError, not_found
from hearth_runtime.logs import kv
from hearth_runtime.resources import check_id
from hearth_runtime.store import Store
from hearth_runtime.text import neutral
from hearth_runtime.timeconv import duration_seconds, milliseconds_of

log = logging.getLogger("hearth.audio.model")

QUARANTINED = Gauge(
    "hearth_audio_quarantined",
    "Stored streams/zones set aside because they cannot be read or are invalid.",
    ["kind"],
)

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
# Bounds of request fields (audio.proto states them next to each field).
MAX_DISPLAY_NAME = 128
MAX_SERVER = 256
MAX_STREAMS = 64
MAX_ZONES = 64

STREAM_FIELDS = ("display_name", "source", "group", "port", "ttl", "enabled", "player_output")
ZONE_FIELDS = ("display_name", "server", "sink", "volume", "muted", "latency")


def stream_id(name: str) -> str:
    return name.removeprefix("streams/")


def zone_id(name: str) -> str:
    return name.removeprefix("zones/")


def latency_ms(zone: audio_pb2.Zone) -> int:
    if not zone.HasField("latency"):
        return DEFAULT_LATENCY_MS
    return round(milliseconds_of(zone.latency))


def check_pulse_name(field: str, value: str) -> None:
    if value and not _PULSE_NAME.match(value):
        raise InvalidArgument(
            field, f"{value[:MAX_DISPLAY_NAME]!r} is not a PulseAudio sink/source name"
        )


def check_display_name(field: str, value: str) -> None:
    """At most MAX_DISPLAY_NAME characters, printable (no control or format characters)."""
    if len(value) > MAX_DISPLAY_NAME:
        raise InvalidArgument(field, f"longer than {MAX_DISPLAY_NAME} characters")
    if not value.isprintable():
        raise InvalidArgument(field, "contains control or format characters")


def _tidy_display_name(item: audio_pb2.Stream | audio_pb2.Zone, key: str) -> None:
    """A display name stored before names were bounded is made printable and cut (logged)
    rather than setting a working stream or zone aside for a cosmetic field."""
    try:
        check_display_name("display_name", item.display_name)
    except InvalidArgument:
        item.display_name = neutral(item.display_name)[:MAX_DISPLAY_NAME]
        log.warning("stored display name tidied", extra=kv(id=key, now=item.display_name))


class Desired:
    """Streams and zones as the user wants them; every change is written through."""

    def __init__(self, store: Store, group_pool: str) -> None:
        self._store = store
        self._pool = ipaddress.IPv4Network(group_pool)
        self.streams: dict[str, audio_pb2.Stream] = {}
        self.zones: dict[str, audio_pb2.Zone] = {}
        # Quarantined: id -> (what could be read of it, why it is set aside).
        self.bad_streams: dict[str, tuple[audio_pb2.Stream, str]] = {}
        self.bad_zones: dict[str, tuple[audio_pb2.Zone, str]] = {}
        for row in store.query("SELECT id, data FROM streams ORDER BY id"):
            self._load_stream(str(row["id"]), row["data"])
        for row in store.query("SELECT id, data FROM zones ORDER BY id"):
            self._load_zone(str(row["id"]), row["data"])
        self._count_quarantined()

    def _load_stream(self, sid: str, data: object) -> None:
        stream = audio_pb2.Stream(name=f"streams/{sid}")
        try:
            check_id("id", sid)
            stream = audio_pb2.Stream.FromString(bytes(data))  # type: ignore[call-overload]
            _tidy_display_name(stream, sid)
            checked = self.normalise_stream(stream, sid)
        except (DecodeError, TypeError, ValueError, HearthError) as exc:
            self._quarantine_stream(sid, stream, exc)
            return
        self.streams[sid] = checked

    def _load_zone(self, zid: str, data: object) -> None:
        zone = audio_pb2.Zone(name=f"zones/{zid}")
        try:
            check_id("id", zid)
            zone = audio_pb2.Zone.FromString(bytes(data))  # type: ignore[call-overload]
            _tidy_display_name(zone, zid)
            # Its stream may be gone or quarantined: the reconciler then plays nothing.
            checked = self.normalise_zone(zone, zid, check_stream=False)
        except (DecodeError, TypeError, ValueError, HearthError) as exc:
            self._quarantine_zone(zid, zone, exc)
            return
        self.zones[zid] = checked

    def _quarantine_stream(self, sid: str, stream: audio_pb2.Stream, exc: Exception) -> None:
        problem = neutral(f"stored stream is invalid: {exc}", 300)
        stream.name = f"streams/{neutral(sid, 80)}"
        self.bad_streams[sid] = (stream, problem)
        log.error("stream quarantined", extra=kv(stream=sid, problem=problem))

    def _quarantine_zone(self, zid: str, zone: audio_pb2.Zone, exc: Exception) -> None:
        problem = neutral(f"stored zone is invalid: {exc}", 300)
        zone.name = f"zones/{neutral(zid, 80)}"
        self.bad_zones[zid] = (zone, problem)
        log.error("zone quarantined", extra=kv(zone=zid, problem=problem))

    def _count_quarantined(self) -> None:
        QUARANTINED.labels("stream").set(len(self.bad_streams))
        QUARANTINED.labels("zone").set(len(self.bad_zones))

    # ------------------------------------------------------------------- streams

    def stream(self, name: str, field: str = "name", quarantined: bool = False) -> audio_pb2.Stream:
        """The stream ``name`` (INVALID_ARGUMENT naming ``field`` / NOT_FOUND); with
        ``quarantined``, a quarantined stream too (for Get, Update, Delete)."""
        sid = stream_id(name)
        if not name.startswith("streams/") or len(name) > 200:
            raise InvalidArgument(field, f"{name[:80]!r} is not a streams/{{id}} resource name")
        if sid in self.streams:
            return self.streams[sid]
        if quarantined and sid in self.bad_streams:
            return self.bad_streams[sid][0]
        raise not_found("stream", name)

    def zone(self, name: str, field: str = "name", quarantined: bool = False) -> audio_pb2.Zone:
        zid = zone_id(name)
        if not name.startswith("zones/") or len(name) > 200:
            raise InvalidArgument(field, f"{name[:80]!r} is not a zones/{{id}} resource name")
        if zid in self.zones:
            return self.zones[zid]
        if quarantined and zid in self.bad_zones:
            return self.bad_zones[zid][0]
        raise not_found("zone", name)

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
        out.ClearField("problem")
        check_display_name("stream.display_name", out.display_name)
        if not out.source:
            out.source = sid
        check_pulse_name("stream.source", out.source)
        if not out.group:
            out.group = self.allocate_group()
        try:
            group = ipaddress.IPv4Address(out.group)
        except ValueError:
            raise InvalidArgument(
                "stream.group", f"{out.group[:64]!r} is not an IPv4 address"
            ) from None
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
        clean.ClearField("problem")
        self._store.execute(
            "INSERT OR REPLACE INTO streams (id, data) VALUES (?, ?)",
            (sid, clean.SerializeToString()),
        )
        self.streams[sid] = clean
        if self.bad_streams.pop(sid, None) is not None:
            log.info("quarantined stream fixed", extra=kv(stream=sid))
            self._count_quarantined()

    def delete_stream(self, sid: str) -> None:
        self._store.execute("DELETE FROM streams WHERE id = ?", (sid,))
        self.streams.pop(sid, None)
        if self.bad_streams.pop(sid, None) is not None:
            self._count_quarantined()

    # --------------------------------------------------------------------- zones

    def normalise_zone(
        self, zone: audio_pb2.Zone, zid: str, check_stream: bool = True
    ) -> audio_pb2.Zone:
        out = audio_pb2.Zone()
        out.CopyFrom(zone)
        out.name = f"zones/{zid}"
        out.ClearField("status")
        out.ClearField("problem")
        check_display_name("zone.display_name", out.display_name)
        if not out.server:
            raise InvalidArgument("zone.server", "must not be empty (tcp:host:4713 or unix:/path)")
        if len(out.server) > MAX_SERVER or not out.server.isprintable() or " " in out.server:
            raise InvalidArgument(
                "zone.server", f"at most {MAX_SERVER} printable characters, no spaces"
            )
        try:
            check_pulse_server(out.server)
        except ValueError as exc:
            raise InvalidArgument("zone.server", str(exc)) from None
        check_pulse_name("zone.sink", out.sink)
        if not (math.isfinite(out.volume) and 0.0 <= out.volume <= MAX_VOLUME):
            raise InvalidArgument("zone.volume", f"{out.volume} is out of range (0.0-1.5)")
        if not out.HasField("latency"):
            out.latency.FromMilliseconds(DEFAULT_LATENCY_MS)
        duration_seconds("zone.latency", out.latency, 0, 3600)  # valid, then in ms below
        ms = latency_ms(out)
        if not MIN_LATENCY_MS <= ms <= MAX_LATENCY_MS:
            raise InvalidArgument(
                "zone.latency", f"{ms} ms is out of range ({MIN_LATENCY_MS}-{MAX_LATENCY_MS} ms)"
            )
        if out.stream and check_stream:
            self.stream(out.stream, "zone.stream")
        elif out.stream and not out.stream.startswith("streams/"):
            raise InvalidArgument("zone.stream", "is not a streams/{id} resource name")
        return out

    def put_zone(self, zone: audio_pb2.Zone) -> None:
        zid = zone_id(zone.name)
        clean = audio_pb2.Zone()
        clean.CopyFrom(zone)
        clean.ClearField("status")
        clean.ClearField("problem")
        self._store.execute(
            "INSERT OR REPLACE INTO zones (id, data) VALUES (?, ?)",
            (zid, clean.SerializeToString()),
        )
        self.zones[zid] = clean
        if self.bad_zones.pop(zid, None) is not None:
            log.info("quarantined zone fixed", extra=kv(zone=zid))
            self._count_quarantined()

    def delete_zone(self, zid: str) -> None:
        self._store.execute("DELETE FROM zones WHERE id = ?", (zid,))
        self.zones.pop(zid, None)
        if self.bad_zones.pop(zid, None) is not None:
            self._count_quarantined()

    def zones_on(self, stream_name: str) -> Iterable[audio_pb2.Zone]:
        return [z for z in self.zones.values() if z.stream == stream_name]
