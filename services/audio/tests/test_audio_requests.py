"""Requests and stored state at a real hearth-audio (in a lab host, so that its health
monitor joins multicast groups only inside the lab): every field validated with the bounds
audio.proto states (INVALID_ARGUMENT naming the field, nothing stored), and bad rows written
into its SQLite directly never stop it from starting (quarantined, visible, fixable)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from audio_fuzz_strategies import FUZZ_EXAMPLES  # type: ignore[import-not-found]
from google.protobuf import duration_pb2, field_mask_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth_audio.model import MIGRATIONS
from hearth_lab import Host, Lab, lab_available
from hearth_runtime.store import Store
from hearth_testing import ServiceProcess, metric_value, scrape

pytestmark = [pytest.mark.lab]

GRPC_PORT, METRICS_PORT = 50062, 9162


@dataclass
class Hub:
    lab: Lab
    host: Host
    address: str

    def start(self, state: Path) -> ServiceProcess:
        return ServiceProcess(
            "audio",
            env={
                "HEARTH_AUDIO_GRPC_LISTEN": f"0.0.0.0:{GRPC_PORT}",
                "HEARTH_AUDIO_METRICS_LISTEN": f"0.0.0.0:{METRICS_PORT}",
                "HEARTH_AUDIO_STATE_DIR": str(state),
                "HEARTH_AUDIO_MULTICAST_INTERFACE": "eth0",
            },
            prefix=self.host.command([]),
            log_path=self.lab.workdir / "audio.log",
        ).start(timeout=30)

    def stub(self) -> tuple[grpc.Channel, audio_pb2_grpc.AudioServiceStub]:
        channel = grpc.insecure_channel(f"{self.address}:{GRPC_PORT}")
        return channel, audio_pb2_grpc.AudioServiceStub(channel)


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"hearth_lab: {reason}")
    with Lab(prefix="aq") as lab:
        host = lab.add_host("hub")
        yield Hub(lab, host, host.expose())


def _error(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value.code(), err.value.details() or ""


def test_bad_stored_streams_and_zones_are_quarantined_not_fatal(hub: Hub) -> None:
    """Rows the API would never accept, written into the SQLite file: before, an
    undecodable row or a port beyond 65535 (OverflowError in bind) stopped hearth-audio
    from starting. Now it starts, sets them aside (state QUARANTINED / problem), counts
    them, and they can be fixed with Update or removed with Delete; a restart keeps that."""
    state = hub.lab.workdir / "quarantine"
    state.mkdir()
    store = Store(state / "audio.sqlite3", MIGRATIONS)
    rows = {
        "good": audio_pb2.Stream(name="streams/good", group="239.255.0.1", port=46000, ttl=1),
        "bigport": audio_pb2.Stream(name="streams/bigport", group="239.255.0.2", port=70000),
        "nogroup": audio_pb2.Stream(name="streams/nogroup", group="not-an-ip", port=46000),
        # Valid but for a display name from before names were bounded: kept, tidied.
        "oldname": audio_pb2.Stream(
            name="streams/oldname", group="239.255.0.3", port=46000, display_name="\x1b[1m" * 99
        ),
    }
    for sid, stream in rows.items():
        store.execute("INSERT INTO streams VALUES (?, ?)", (sid, stream.SerializeToString()))
    store.execute("INSERT INTO streams VALUES (?, ?)", ("garbage", b"\xff\xff\xff"))
    zone = audio_pb2.Zone(name="zones/z", server="http://nope", stream="streams/good")
    store.execute("INSERT INTO zones VALUES (?, ?)", ("z", zone.SerializeToString()))
    store.execute("INSERT INTO zones VALUES (?, ?)", ("junk", b"\x0a\xff"))
    store.close()

    service = hub.start(state)
    try:
        channel, stub = hub.stub()
        with channel:
            streams = {s.name: s for s in stub.ListStreams(audio_pb2.ListStreamsRequest()).streams}
            assert set(streams) == {f"streams/{s}" for s in (*rows, "garbage")}, streams
            assert streams["streams/good"].state != audio_pb2.STREAM_STATE_QUARANTINED
            old = streams["streams/oldname"]
            assert (
                old.state != audio_pb2.STREAM_STATE_QUARANTINED and old.display_name.isprintable()
            )
            assert 0 < len(old.display_name) <= 128, old
            for sid, word in (("bigport", "stream.port"), ("nogroup", "stream.group"),
                              ("garbage", "invalid")):  # fmt: skip
                s = streams[f"streams/{sid}"]
                assert s.state == audio_pb2.STREAM_STATE_QUARANTINED and word in s.problem, s
            zones = {z.name: z for z in stub.ListZones(audio_pb2.ListZonesRequest()).zones}
            assert "zone.server" in zones["zones/z"].problem and zones["zones/junk"].problem
            samples = scrape(f"{hub.address}:{METRICS_PORT}")
            assert metric_value(samples, "hearth_audio_quarantined", kind="stream") == 3
            assert metric_value(samples, "hearth_audio_quarantined", kind="zone") == 2
            assert "stream quarantined" in service.output

            # Quarantined streams are neither enabled nor health-checked until fixed.
            code, details = _error(
                stub.EnableStream, audio_pb2.EnableStreamRequest(name="streams/bigport")
            )
            assert code == grpc.StatusCode.FAILED_PRECONDITION and "quarantined" in details
            # A fix that is still invalid is refused and changes nothing.
            still_bad = audio_pb2.Stream(name="streams/bigport", port=70001)
            mask = field_mask_pb2.FieldMask(paths=["port"])
            code, details = _error(
                stub.UpdateStream, audio_pb2.UpdateStreamRequest(stream=still_bad, update_mask=mask)
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "stream.port" in details
            fixed = stub.UpdateStream(
                audio_pb2.UpdateStreamRequest(
                    stream=audio_pb2.Stream(name="streams/bigport", port=46002), update_mask=mask
                )
            )
            assert fixed.state != audio_pb2.STREAM_STATE_QUARANTINED and fixed.problem == ""
            stub.DeleteStream(audio_pb2.DeleteStreamRequest(name="streams/garbage"))
            stub.DeleteZone(audio_pb2.DeleteZoneRequest(name="zones/junk"))
            server_mask = field_mask_pb2.FieldMask(paths=["server"])
            zone_fixed = stub.UpdateZone(
                audio_pb2.UpdateZoneRequest(
                    zone=audio_pb2.Zone(name="zones/z", server="tcp:198.18.0.99:4713"),
                    update_mask=server_mask,
                )
            )
            assert zone_fixed.problem == "" and zone_fixed.stream == "streams/good"
    finally:
        service.stop()

    # After a restart: only nogroup is still quarantined; the fixes were stored.
    service = hub.start(state)
    try:
        channel, stub = hub.stub()
        with channel:
            streams = {s.name: s for s in stub.ListStreams(audio_pb2.ListStreamsRequest()).streams}
            kept = ("good", "bigport", "nogroup", "oldname")
            assert set(streams) == {f"streams/{sid}" for sid in kept}
            assert streams["streams/bigport"].port == 46002
            assert [
                n for n, s in streams.items() if s.state == audio_pb2.STREAM_STATE_QUARANTINED
            ] == ["streams/nogroup"]
            listed = stub.ListZones(audio_pb2.ListZonesRequest()).zones
            assert [(z.name, z.problem) for z in listed] == [("zones/z", "")]
    finally:
        service.stop()


# -------------------------------------------------------------------- request fields

# (field named in the error, request) for every bound audio.proto states.
_BAD_STREAMS = [
    ("stream_id", audio_pb2.CreateStreamRequest(stream_id="Bad_Id", stream=audio_pb2.Stream())),
    ("stream_id", audio_pb2.CreateStreamRequest(stream_id="x" * 64, stream=audio_pb2.Stream())),
    ("stream.display_name", audio_pb2.Stream(display_name="x" * 129)),
    ("stream.display_name", audio_pb2.Stream(display_name="a\x1b[2Jb")),
    ("stream.source", audio_pb2.Stream(source="a b")),
    ("stream.source", audio_pb2.Stream(source="s" * 129)),
    ("stream.group", audio_pb2.Stream(group="10.0.0.1")),
    ("stream.group", audio_pb2.Stream(group="239.255.0.300")),
    ("stream.group", audio_pb2.Stream(group="x" * 10000)),
    ("stream.port", audio_pb2.Stream(group="239.255.9.1", port=1023)),
    ("stream.port", audio_pb2.Stream(group="239.255.9.1", port=46001)),
    ("stream.port", audio_pb2.Stream(group="239.255.9.1", port=9875)),
    ("stream.port", audio_pb2.Stream(group="239.255.9.1", port=-2)),
    ("stream.ttl", audio_pb2.Stream(group="239.255.9.1", ttl=256)),
    ("stream.ttl", audio_pb2.Stream(group="239.255.9.1", ttl=-1)),
]
_BAD_ZONES = [
    ("zone.server", audio_pb2.Zone()),
    ("zone.server", audio_pb2.Zone(server="http://x")),
    ("zone.server", audio_pb2.Zone(server="tcp:host:99999")),
    ("zone.server", audio_pb2.Zone(server="tcp:" + "h" * 300)),
    ("zone.server", audio_pb2.Zone(server="tcp:a\nb:4713")),
    ("zone.display_name", audio_pb2.Zone(server="tcp:h", display_name="\u202eevil")),
    ("zone.sink", audio_pb2.Zone(server="tcp:h", sink="a;b")),
    ("zone.volume", audio_pb2.Zone(server="tcp:h", volume=1.51)),
    ("zone.volume", audio_pb2.Zone(server="tcp:h", volume=-0.1)),
    ("zone.volume", audio_pb2.Zone(server="tcp:h", volume=math.nan)),
    ("zone.volume", audio_pb2.Zone(server="tcp:h", volume=math.inf)),
    ("zone.stream", audio_pb2.Zone(server="tcp:h", stream="radio")),
]


def _zone_with_latency(ms: int) -> audio_pb2.Zone:
    zone = audio_pb2.Zone(server="tcp:h")
    zone.latency.FromMilliseconds(ms)
    return zone


_BAD_ZONES += [("zone.latency", _zone_with_latency(ms)) for ms in (19, 5001, -5)]


@pytest.fixture(scope="module")
def running(hub: Hub) -> Iterator[audio_pb2_grpc.AudioServiceStub]:
    state = hub.lab.workdir / "requests"
    service = hub.start(state)
    channel, stub = hub.stub()
    try:
        stub.CreateStream(
            audio_pb2.CreateStreamRequest(
                stream_id="radio", stream=audio_pb2.Stream(group="239.255.0.1")
            )
        )
        stub.CreateZone(
            audio_pb2.CreateZoneRequest(zone_id="a", zone=audio_pb2.Zone(server="tcp:198.18.0.99"))
        )
        yield stub
    finally:
        channel.close()
        service.stop()


def _stored(stub: audio_pb2_grpc.AudioServiceStub) -> tuple[list[bytes], list[bytes]]:
    streams = stub.ListStreams(audio_pb2.ListStreamsRequest()).streams
    zones = stub.ListZones(audio_pb2.ListZonesRequest()).zones
    strip = [audio_pb2.Zone(name=z.name, server=z.server, stream=z.stream) for z in zones]
    return [s.SerializeToString() for s in streams], [z.SerializeToString() for z in strip]


@pytest.mark.parametrize("field,request_or_stream", _BAD_STREAMS)
def test_bad_stream_fields(running: Any, field: str, request_or_stream: Any) -> None:
    stub = running
    before = _stored(stub)
    request = request_or_stream
    if isinstance(request, audio_pb2.Stream):
        request = audio_pb2.CreateStreamRequest(stream_id="new", stream=request)
    code, details = _error(stub.CreateStream, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details, details
    if field != "stream_id":  # the same values through UpdateStream
        patch = audio_pb2.Stream()
        patch.CopyFrom(request.stream)
        patch.name = "streams/radio"
        mask = field_mask_pb2.FieldMask(paths=[f.name for f, _ in patch.ListFields()][1:])
        mask.paths[:] = [p for p in mask.paths if p != "name"]
        code, details = _error(
            stub.UpdateStream, audio_pb2.UpdateStreamRequest(stream=patch, update_mask=mask)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details, details
    assert _stored(stub) == before


@pytest.mark.parametrize("field,zone", _BAD_ZONES)
def test_bad_zone_fields(running: Any, field: str, zone: audio_pb2.Zone) -> None:
    stub = running
    before = _stored(stub)
    code, details = _error(stub.CreateZone, audio_pb2.CreateZoneRequest(zone_id="new", zone=zone))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details, details
    patch = audio_pb2.Zone()
    patch.CopyFrom(zone)
    patch.name = "zones/a"
    paths = [f.name for f, _ in patch.ListFields() if f.name not in ("name", "stream")]
    paths = paths or ["server"]  # Zone(): clearing the server
    if field != "zone.stream":  # a zone's stream changes only through SubscribeZone
        code, details = _error(
            stub.UpdateZone,
            audio_pb2.UpdateZoneRequest(
                zone=patch, update_mask=field_mask_pb2.FieldMask(paths=paths)
            ),
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details, details
    assert _stored(stub) == before


def test_background_work_runs_under_the_supervisor(hub: Hub, running: Any) -> None:
    """Zone a's reconcile loop and PulseAudio link thread (its server does not answer, so
    the link keeps retrying) and the health loop are supervised: their families appear in
    hearth_task_restarts_total / hearth_task_failing (created when spawned), with no crash."""
    samples = scrape(f"{hub.address}:{METRICS_PORT}")
    for family in ("audio-reconcile", "audio-pulse", "audio-health"):
        assert metric_value(samples, "hearth_task_restarts_total", task=family) == 0, family
        assert metric_value(samples, "hearth_task_failing", task=family) == 0, family


UNKNOWN_ACTION: Any = 99  # no such ControlPlayerRequest.Action


def test_bad_names_sync_player_and_paging(running: Any) -> None:
    stub = running
    cases: list[tuple[str, Any, Any]] = [
        ("name", stub.GetStream, audio_pb2.GetStreamRequest(name="radio")),
        ("name", stub.GetStream, audio_pb2.GetStreamRequest(name="streams/" + "x" * 300)),
        ("name", stub.GetZone, audio_pb2.GetZoneRequest(name="a")),
        ("name", stub.GetStreamHealth, audio_pb2.GetStreamHealthRequest(name="streams/radio")),
        ("stream", stub.SubscribeZone, audio_pb2.SubscribeZoneRequest(name="zones/a")),
        ("stream", stub.SubscribeZone,
         audio_pb2.SubscribeZoneRequest(name="zones/a", stream="radio")),
        ("page_size", stub.ListStreams, audio_pb2.ListStreamsRequest(page_size=-1)),
        ("page_size", stub.ListZones, audio_pb2.ListZonesRequest(page_size=-1)),
        ("page_token", stub.ListStreams, audio_pb2.ListStreamsRequest(page_token="nope")),
        ("zone_a", stub.MeasureSync, audio_pb2.MeasureSyncRequest(zone_a="a", zone_b="zones/a")),
        ("zone_b", stub.MeasureSync,
         audio_pb2.MeasureSyncRequest(zone_a="zones/a", zone_b="zones/a")),
        ("tolerance_ms", stub.CalibrateSync,
         audio_pb2.CalibrateSyncRequest(zone_a="zones/a", zone_b="zones/b", tolerance_ms=math.nan)),
        ("max_rounds", stub.CalibrateSync,
         audio_pb2.CalibrateSyncRequest(zone_a="zones/a", zone_b="zones/b", max_rounds=11)),
        ("duration", stub.MeasureSync,
         audio_pb2.MeasureSyncRequest(zone_a="zones/a", zone_b="zones/b",
                                      duration=duration_pb2.Duration(seconds=31))),
        ("action", stub.ControlPlayer, audio_pb2.ControlPlayerRequest(action=UNKNOWN_ACTION)),
        ("action", stub.ControlPlayer, audio_pb2.ControlPlayerRequest()),
        ("volume", stub.ControlPlayer,
         audio_pb2.ControlPlayerRequest(action=audio_pb2.ControlPlayerRequest.ACTION_SET_VOLUME,
                                        volume=101)),
    ]  # fmt: skip
    for field, call, request in cases:
        code, details = _error(call, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details, (field, details)


@settings(max_examples=FUZZ_EXAMPLES // 3 or 1, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    display_name=st.text(max_size=200),
    source=st.text(max_size=140),
    group=st.one_of(st.ip_addresses(v=4).map(str), st.text(max_size=30)),
    port=st.integers(-(2**31), 2**31 - 1),
    ttl=st.integers(-(2**31), 2**31 - 1),
)
def test_generated_streams_are_stored_only_when_valid(
    running: Any, display_name: str, source: str, group: str, port: int, ttl: int
) -> None:
    """Any CreateStream: OK (then stored as answered, and deleted again) or
    INVALID_ARGUMENT/ALREADY_EXISTS naming a stream field, with nothing stored."""
    stub = running
    before = _stored(stub)
    stream = audio_pb2.Stream(
        display_name=display_name, source=source, group=group, port=port, ttl=ttl
    )
    try:
        made = stub.CreateStream(audio_pb2.CreateStreamRequest(stream_id="gen", stream=stream))
    except grpc.RpcError as exc:
        assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS)
        assert "stream." in (exc.details() or ""), exc.details()
        assert _stored(stub) == before
        return
    try:
        assert made.display_name == display_name and 1024 <= made.port <= 65535
        assert stub.GetStream(audio_pb2.GetStreamRequest(name="streams/gen")) == made
    finally:
        stub.DeleteStream(audio_pb2.DeleteStreamRequest(name="streams/gen"))


@settings(max_examples=FUZZ_EXAMPLES // 3 or 1, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    display_name=st.text(max_size=200),
    server=st.one_of(
        st.text(max_size=300),
        st.builds(lambda h, p: f"tcp:{h}:{p}", st.text(max_size=20), st.integers(-5, 70000)),
        st.builds(lambda p: f"unix:{p}", st.text(max_size=40)),
    ),
    sink=st.text(max_size=140),
    volume=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    latency_ms=st.one_of(st.none(), st.integers(-(10**6), 10**7)),
)
def test_generated_zones_are_stored_only_when_valid(
    running: Any,
    display_name: str,
    server: str,
    sink: str,
    volume: float | None,
    latency_ms: int | None,
) -> None:
    """Any CreateZone: OK (stored as answered, then deleted) or INVALID_ARGUMENT naming a
    zone field, with nothing stored; never UNKNOWN/INTERNAL."""
    stub = running
    before = _stored(stub)
    zone = audio_pb2.Zone(display_name=display_name, server=server, sink=sink)
    if volume is not None:
        zone.volume = volume
    if latency_ms is not None:
        zone.latency.FromMilliseconds(latency_ms)
    try:
        made = stub.CreateZone(audio_pb2.CreateZoneRequest(zone_id="gen", zone=zone))
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (exc.code(), exc.details())
        assert "zone." in (exc.details() or ""), exc.details()
        assert _stored(stub) == before
        return
    try:
        assert made.server == server and 0.0 <= made.volume <= 1.5
        assert 20 <= made.latency.ToMilliseconds() <= 5000
    finally:
        stub.DeleteZone(audio_pb2.DeleteZoneRequest(name="zones/gen"))
