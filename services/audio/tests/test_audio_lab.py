"""The audio service against real PulseAudio and MPD in network namespaces."""

from __future__ import annotations

import ipaddress
import math
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hearth.audio.v1 import audio_pb2
from hearth_audio.testbed import (
    AudioLab,
    audio_lab,
    baseline,
    packets_on,
    start_intruder,
    tone_levels,
)
from hearth_lab import Host, lab_available
from hearth_testing import metric_value, scrape, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def house() -> Iterator[AudioLab]:
    """One lab house (station, zones a and b, the service) for this module's tests; each
    test starts from ``baseline`` or restores what it changed."""
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"hearth_lab: {reason}")
    with audio_lab() as al:
        yield al


def plays(al: AudioLab, zone: str, freq: int) -> bool:
    """The zone plays ``freq`` clearly and not the other test tone."""
    levels = tone_levels(al.record(zone, 0.8))
    other = 880 if freq == 440 else 440
    return levels[freq] > 0.02 and levels[other] < levels[freq] / 50


def silent(al: AudioLab, zone: str) -> bool:
    return tone_levels(al.record(zone, 0.8))[0] < 1e-3


def receivers(al: AudioLab, zone: str) -> list[str]:
    out = al.zones[zone].pactl("list", "short", "modules").stdout
    return [line for line in out.splitlines() if "module-rtp-recv" in line]


def health(al: AudioLab, sid: str) -> audio_pb2.StreamHealth:
    return al.stub.GetStreamHealth(audio_pb2.GetStreamHealthRequest(name=f"streams/{sid}/health"))


def zone_status(al: AudioLab, zone: str) -> audio_pb2.ZoneStatus:
    return al.stub.GetZone(audio_pb2.GetZoneRequest(name=f"zones/{zone}")).status


def assert_zone_receiving(al: AudioLab, zone: str) -> None:
    """The zone, patched to a live stream, reports receiving and a latency near its
    receiver's latency_msec=200 (a fresh receiver starts at ~40 ms and grows to it within
    a few seconds; a busy machine can push it ~100 ms off), in GetZone and the metric."""

    def settled() -> audio_pb2.ZoneStatus | None:
        status = zone_status(al, zone)
        latency = status.latency.ToNanoseconds() / 1e9
        return status if status.receiving and 0.1 <= latency <= 0.5 else None

    status = wait_for(f"zone {zone} receiving at ~200 ms latency", settled, timeout=30)
    assert status is not None and status.reachable and not status.stalled, status
    assert status.error == "", status

    def metric_latency() -> float | None:
        value = metric_value(scrape(al.metrics), "hearth_audio_zone_latency_seconds", zone=zone)
        return value if value is not None and 0.1 <= value <= 0.5 else None

    # The gauge is refreshed every second from the same observation.
    wait_for(f"zone {zone} latency metric at ~200 ms", metric_latency, timeout=10)


def test_patch_switch_unsubscribe(house: AudioLab) -> None:
    al = house
    baseline(al)
    wait_for("zone a playing 440 Hz", lambda: plays(al, "a", 440))
    wait_for("zone b playing 880 Hz", lambda: plays(al, "b", 880))
    assert len(receivers(al, "a")) == 1 and "239.255.0.1" in receivers(al, "a")[0]
    assert_zone_receiving(al, "a")

    zone = al.stub.SubscribeZone(
        audio_pb2.SubscribeZoneRequest(name="zones/a", stream="streams/tv")
    )
    assert zone.stream == "streams/tv"
    wait_for("zone a switched to 880 Hz", lambda: plays(al, "a", 880))
    assert len(receivers(al, "a")) == 1 and "239.255.0.2" in receivers(al, "a")[0]
    assert plays(al, "b", 880)
    assert_zone_receiving(al, "a")

    al.stub.UnsubscribeZone(audio_pb2.UnsubscribeZoneRequest(name="zones/a"))
    assert receivers(al, "a") == []
    wait_for("zone a silent", lambda: silent(al, "a"))
    assert plays(al, "b", 880)
    wait_for("zone a not receiving", lambda: not zone_status(al, "a").receiving)
    samples = scrape(al.metrics)
    assert metric_value(samples, "hearth_audio_zone_subscribed", zone="b", stream="tv") == 1
    baseline(al)


def test_bad_input(house: AudioLab) -> None:
    stub = house.stub

    def code_of(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:  # code, details
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        return err.value.code(), err.value.details() or ""

    code, _ = code_of(stub.GetZone, audio_pb2.GetZoneRequest(name="zones/nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = code_of(stub.GetStream, audio_pb2.GetStreamRequest(name="streams/nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = code_of(
        stub.SubscribeZone, audio_pb2.SubscribeZoneRequest(name="zones/a", stream="streams/x")
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = code_of(
        stub.SubscribeZone, audio_pb2.SubscribeZoneRequest(name="zones/x", stream="streams/tv")
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = code_of(
        stub.CreateStream,
        audio_pb2.CreateStreamRequest(stream_id="bad", stream=audio_pb2.Stream(group="10.0.0.1")),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "stream.group" in details
    code, details = code_of(
        stub.CreateStream,
        audio_pb2.CreateStreamRequest(
            stream_id="bad", stream=audio_pb2.Stream(group="239.255.9.9", port=70000)
        ),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "stream.port" in details
    code, details = code_of(
        stub.CreateStream,
        audio_pb2.CreateStreamRequest(
            stream_id="copy", stream=audio_pb2.Stream(group="239.255.0.1", port=46000)
        ),
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS and "239.255.0.1:46000" in details
    code, details = code_of(
        stub.CreateZone,
        audio_pb2.CreateZoneRequest(zone_id="z", zone=audio_pb2.Zone(server="http://x")),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "zone.server" in details
    # Nothing of the rejected requests was kept.
    names = [s.name for s in stub.ListStreams(audio_pb2.ListStreamsRequest()).streams]
    assert names == ["streams/radio", "streams/tv"]


def test_restores_zone_after_restart_and_manual_unload(house: AudioLab) -> None:
    al = house
    baseline(al)
    wait_for("zone a playing 440 Hz", lambda: plays(al, "a", 440))
    al.zones["a"].kill()
    wait_for(
        "zone a reported unreachable",
        lambda: not al.stub.GetZone(audio_pb2.GetZoneRequest(name="zones/a")).status.reachable,
    )
    assert metric_value(scrape(al.metrics), "hearth_audio_zone_up", zone="a") == 0
    al.zones["a"].start()
    wait_for("receiver restored after restart", lambda: len(receivers(al, "a")) == 1)
    wait_for("zone a playing 440 Hz again", lambda: plays(al, "a", 440))

    index = receivers(al, "a")[0].split()[0]
    assert al.zones["a"].pactl("unload-module", index).returncode == 0
    wait_for(
        "receiver reloaded after manual unload",
        lambda: len(receivers(al, "a")) == 1 and receivers(al, "a")[0].split()[0] != index,
        timeout=10,
    )
    wait_for("zone a playing 440 Hz again", lambda: plays(al, "a", 440))
    actions = metric_value(
        scrape(al.metrics), "hearth_audio_reconcile_actions_total", target="a",
        action="load_receiver",
    )  # fmt: skip
    assert actions is not None and actions >= 3


def _counts(al: AudioLab) -> tuple[int, int]:
    """(lost, expected) summed over both streams: both leave through the station's link."""
    both = [health(al, sid) for sid in ("radio", "tv")]
    lost = sum(h.lost for h in both)
    return lost, lost + sum(h.packets for h in both)


def _loss_over(al: AudioLab, packets: int) -> tuple[int, int]:
    """(lost, expected) over the next ``packets`` packets the streams sent."""
    lost0, expected0 = _counts(al)

    def window() -> tuple[int, int] | None:
        lost, expected = _counts(al)
        return (lost - lost0, expected - expected0) if expected - expected0 >= packets else None

    found = wait_for(f"{packets} packets", window, timeout=packets / 100 + 30, every=0.5)
    assert found is not None
    return found


# Every statistical check below is designed to fail a correct service at most this often.
# z is the two-sided normal quantile: P(|N(0,1)| > 3.89) = 1e-4.
FALSE_FAILURE = 1e-4
Z = 3.89
LOSS_P = 0.05  # the impairment's loss probability, per packet, independent
# n = 9000 packets (both streams, ~300 packets/s, 30 s): sd of the measured ratio
# sqrt(p (1 - p) / n) = 0.23 %, so the bound is +-0.89 %.
LOSS_PACKETS = 9000


def binomial_bound(p: float, n: float) -> float:
    """Half-width of the interval a Binomial(n, p) ratio leaves with probability
    FALSE_FAILURE (normal approximation; n p (1 - p) >= 400 here, where it is exact to
    well within the quoted probability)."""
    return Z * math.sqrt(p * (1 - p) / n)


def _udp_drops(host: Host, groups: tuple[str, ...], port: int) -> int:
    """Datagrams the kernel dropped at full receive buffers of the sockets bound to
    ``groups``:``port`` in ``host`` (/proc/net/udp). A loaded machine can make the service's
    socket overflow: those packets are lost for the service too, but not by the impairment."""
    wanted = {f"{socket.htonl(int(ipaddress.IPv4Address(g))):08X}:{port:04X}" for g in groups}
    out = host.run(["cat", "/proc/net/udp"], check=True).stdout
    return sum(int(f[-1]) for f in (ln.split() for ln in out.splitlines()[1:]) if f[1] in wanted)


def _jitter(al: AudioLab) -> float:
    return health(al, "radio").jitter.ToNanoseconds() / 1e9


def _metric(al: AudioLab, name: str, **labels: str) -> float:
    value = metric_value(scrape(al.metrics), name, **labels)
    assert value is not None, f"{name} {labels} not exported"
    return value


def _after_more_packets(al: AudioLab, what: str, packets: int) -> None:
    """Wait until ``packets`` more packets of radio arrived (sent under the new setting)."""
    start = health(al, "radio").packets
    wait_for(what, lambda: health(al, "radio").packets >= start + packets, timeout=30)


# A second receiver beside the service (same host, same group, same kernel timestamps):
# it prints every radio packet's arrival time and the RFC 3550 jitter (A.8, in seconds at
# 48 kHz) after it, computed independently of hearth_audio.rtp.
_REFERENCE = """
import socket, struct, sys, time
group, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
out = open(sys.argv[4], "w", buffering=1)  # line-buffered: complete up to a kill
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.setsockopt(socket.IPPROTO_IP, 49, 0)  # IP_MULTICAST_ALL off
s.bind((group, port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton(group) + socket.inet_aton("0.0.0.0"))
s.settimeout(0.2)
print("ready", flush=True)
j, last, seen, end = 0.0, None, set(), time.monotonic() + seconds
while time.monotonic() < end:
    try:
        data, anc, _, _ = s.recvmsg(2048, socket.CMSG_SPACE(16))
    except socket.timeout:
        continue
    sec, nsec = struct.unpack_from("@qq", anc[0][2])
    arrival = sec + nsec / 1e9
    seq, ts = struct.unpack_from("!HI", data, 2)
    if seq in seen:
        continue  # a duplicate: not counted (hearth drops it too)
    seen.add(seq)
    transit = arrival * 48000 - ts
    if last is not None:
        d = (transit - last + (1 << 31)) % (1 << 32) - (1 << 31)
        j += (abs(d) - j) / 16.0
    last = transit
    out.write(f"{arrival:.9f} {j / 48000:.9f}\\n")
"""


def _reference_between(ref: list[tuple[float, float]], t0: float, t1: float) -> list[float]:
    """The reference's jitter values after each packet that arrived within [t0, t1], and
    the one just before (the estimate in force at t0)."""
    before = [j for t, j in ref if t < t0][-1:]
    return before + [j for t, j in ref if t0 <= t <= t1]


# The service reads a packet in its event loop some time after the kernel stamped it: a
# reading taken at t reflects the packets that arrived up to t, possibly minus those of
# the last READ_LAG seconds (generous: the loop wakes within milliseconds when idle).
READ_LAG = 0.25


def test_loss_and_jitter_under_netem(house: AudioLab) -> None:
    """Loss and jitter under an impaired station link, decided on enough samples.

    Loss: over LOSS_PACKETS packets the impairment drops each with probability LOSS_P,
    independently, so the measured ratio (after removing packets the service's own socket
    dropped on a loaded machine, counted by the kernel) lies within binomial_bound of
    LOSS_P except with probability FALSE_FAILURE; likewise the 10 s window of
    GetStreamHealth, with n the packets in that window. Clean links must lose nothing
    beyond such socket drops.

    Jitter: no distribution is assumed (the impairer's scheduling and PulseAudio's bursts
    add to netem's uniform +-20 ms by amounts that vary with machine load, which is what
    made fixed bounds flaky). Instead a second receiver beside the service computes RFC 3550
    jitter over the same packets; every reading of the API and of the exported gauge must
    equal the reference's estimate at some packet of its read window. That check has no
    false-failure probability beyond READ_LAG being exceeded. The impairment's effect is
    checked on the same reference: more than twice the clean jitter, and below the largest
    possible mean |D| (2 x 20 ms plus the clean jitter's own 2 x spread is far below 60 ms).

    Overall: 3 binomial checks at FALSE_FAILURE each, about 3e-4 per run.
    """
    al = house
    baseline(al)
    groups = ("239.255.0.1", "239.255.0.2")
    wait_for("radio and tv up", lambda: health(al, "radio").up and health(al, "tv").up)
    drops0 = _udp_drops(al.hub, groups, 46000)
    clean_lost, _ = _loss_over(al, 900)
    assert clean_lost == _udp_drops(al.hub, groups, 46000) - drops0, "loss on a clean link"
    clean_jitter = _jitter(al)
    packets_metric = _metric(al, "hearth_audio_rtp_packets_total", stream="radio")
    age = _metric(al, "hearth_audio_rtp_last_packet_age_seconds", stream="radio")
    assert 0 <= age < 1.0, f"live stream's last packet {age} s ago"
    try:
        lost_before = health(al, "radio").lost
        al.station.netem(loss_percent=LOSS_P * 100)
        wait_for("netem dropping packets", lambda: health(al, "radio").lost > lost_before)
        drops0 = _udp_drops(al.hub, groups, 46000)
        started = time.monotonic()
        lost, expected = _loss_over(al, LOSS_PACKETS)
        elapsed = time.monotonic() - started
        dropped_here = _udp_drops(al.hub, groups, 46000) - drops0
        loss = (lost - dropped_here) / expected
        bound = binomial_bound(LOSS_P, expected)
        assert abs(loss - LOSS_P) <= bound, (
            f"measured loss {loss:.4f} = ({lost} - {dropped_here} socket drops)/{expected},"
            f" bound {LOSS_P} +- {bound:.4f} (backend {al.lab.netem_backend})"
        )
        # The 10 s window of GetStreamHealth: radio alone, about half the packets/s.
        window_n = expected / 2 / elapsed * 10.0
        window_p = LOSS_P + dropped_here / expected
        ratio = health(al, "radio").loss_ratio
        bound = binomial_bound(window_p, window_n)
        assert abs(ratio - window_p) <= bound, (ratio, window_p, bound, window_n)
        assert _metric(al, "hearth_audio_rtp_lost_packets_total", stream="radio") > 0

        al.station.netem(delay_ms=50, jitter_ms=20)
        ref_path = al.lab.workdir / "jitter-reference.txt"
        reference = al.hub.popen(
            ["python3", "-u", "-c", _REFERENCE, "239.255.0.1", "46000", "60", str(ref_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert reference.stdout is not None
            assert reference.stdout.readline().strip() == "ready"
            # The RFC 3550 estimate forgets its past with weight (15/16)^n: 300 packets
            # leave 4e-9 of the state before the impairment (and before the reference).
            _after_more_packets(al, "300 packets under netem jitter", 300)
            readings: list[tuple[float, float, float]] = []  # (t0, t1, jitter)
            for _ in range(5):
                _after_more_packets(al, "100 more packets under netem jitter", 100)
                t0 = time.time()
                value = _jitter(al)
                readings.append((t0, time.time(), value))
            t_scrape = time.time()
            exported = _metric(al, "hearth_audio_rtp_jitter_seconds", stream="radio")
            t_scraped = time.time()
        finally:
            al.hub.stop(reference)
        lines = [ln.split() for ln in ref_path.read_text().splitlines()]
        ref = [(float(f[0]), float(f[1])) for f in lines if len(f) == 2]
        for t0, t1, value in readings:
            near = _reference_between(ref, t0 - READ_LAG, t1)
            assert near and min(near) - 1e-6 <= value <= max(near) + 1e-6, (
                f"API jitter {value * 1e3:.3f} ms, reference around it"
                f" {[round(j * 1e3, 3) for j in near]} ms"
            )
        # The gauge is refreshed every health_interval (1 s) from the same estimate.
        near = _reference_between(ref, t_scrape - 1.0 - READ_LAG, t_scraped)
        assert near and min(near) - 1e-6 <= exported <= max(near) + 1e-6, (
            f"jitter metric {exported * 1e3:.3f} ms, reference {min(near) * 1e3:.3f}"
            f"-{max(near) * 1e3:.3f} ms"
        )
        settled = [j for t, j in ref if t >= readings[0][0]]
        mean = statistics.mean(settled)
        print(
            f"netem: loss {loss:.4f} = ({lost} - {dropped_here})/{expected}, window {ratio:.4f}"
            f" (n {window_n:.0f}); jitter API {[round(r[2] * 1e3, 2) for r in readings]} ms,"
            f" gauge {exported * 1e3:.2f} ms, reference mean {mean * 1e3:.2f} ms,"
            f" clean {clean_jitter * 1e3:.2f} ms"
        )
        assert 2 * clean_jitter < mean < 0.060, (
            f"jitter under +-20 ms netem {mean * 1e3:.2f} ms, clean {clean_jitter * 1e3:.2f} ms"
        )
    finally:
        al.station.clear_netem()
    # Clearing drops what netem still held back; once later packets arrive that gap
    # is counted, and from then on the clean link loses nothing (but socket drops).
    _after_more_packets(al, "packets after clearing netem", 50)
    drops0 = _udp_drops(al.hub, groups, 46000)
    clean_lost, _ = _loss_over(al, 600)
    assert clean_lost == _udp_drops(al.hub, groups, 46000) - drops0, "loss on a clean link"
    counted = _metric(al, "hearth_audio_rtp_packets_total", stream="radio")
    assert counted - packets_metric >= LOSS_PACKETS / 2 * 0.9, (packets_metric, counted)


def test_player_control_and_watch(house: AudioLab) -> None:
    al = house
    events: list[audio_pb2.AudioEvent] = []
    call = al.stub.WatchAudio(audio_pb2.WatchAudioRequest())

    def read() -> None:
        try:
            for event in call:
                events.append(event)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for("current state", lambda: events)
        first = events[0]
        assert first.kind == audio_pb2.AudioEvent.KIND_CURRENT
        assert {s.name for s in first.streams} == {"streams/radio", "streams/tv"}
        assert first.player.reachable

        def player_event(state: int) -> bool:
            return any(
                e.kind == audio_pb2.AudioEvent.KIND_PLAYER_CHANGED and e.player.state == state
                for e in events
            )

        Action = audio_pb2.ControlPlayerRequest.Action
        al.stub.ControlPlayer(audio_pb2.ControlPlayerRequest(action=Action.ACTION_PLAY))
        player = al.stub.ControlPlayer(audio_pb2.ControlPlayerRequest(action=Action.ACTION_PAUSE))
        assert player.state == audio_pb2.PLAYER_STATE_PAUSED
        assert "[paused]" in al.mpd.mpc("status")
        wait_for(
            "PAUSED in the watch", lambda: player_event(audio_pb2.PLAYER_STATE_PAUSED), timeout=5
        )
        events.clear()
        player = al.stub.ControlPlayer(audio_pb2.ControlPlayerRequest(action=Action.ACTION_PLAY))
        assert player.state == audio_pb2.PLAYER_STATE_PLAYING and "[playing]" in al.mpd.mpc(
            "status"
        )
        wait_for(
            "PLAYING in the watch", lambda: player_event(audio_pb2.PLAYER_STATE_PLAYING), timeout=5
        )
        before = player.current_song.position
        player = al.stub.ControlPlayer(audio_pb2.ControlPlayerRequest(action=Action.ACTION_NEXT))
        assert player.current_song.position == (before + 1) % 2
        assert f"#{player.current_song.position + 1}/2" in al.mpd.mpc("status")
        wait_for(
            "next song in the watch",
            lambda: any(
                e.player.current_song.position == player.current_song.position
                and e.kind == audio_pb2.AudioEvent.KIND_PLAYER_CHANGED
                for e in events
            ),
            timeout=5,
        )
        # Someone else pressing pause on the station shows up too (MPD idle).
        al.mpd.mpc("pause")
        wait_for(
            "external pause in the watch",
            lambda: player_event(audio_pb2.PLAYER_STATE_PAUSED),
            timeout=5,
        )
    finally:
        call.cancel()
        al.mpd.mpc("play")


def test_disable_stream_stops_packets(house: AudioLab) -> None:
    al = house
    baseline(al)
    wait_for("tv up", lambda: health(al, "tv").up)
    stream = al.stub.DisableStream(audio_pb2.DisableStreamRequest(name="streams/tv"))
    assert stream.state == audio_pb2.STREAM_STATE_DISABLED
    modules = al.station_pulse.pactl("list", "short", "modules").stdout
    assert "destination_ip=239.255.0.2" not in modules
    try:
        wait_for("tv reported down", lambda: not health(al, "tv").up, timeout=10)
        wait_for(
            "stream_up metric 0",
            lambda: metric_value(scrape(al.metrics), "hearth_audio_stream_up", stream="tv") == 0,
            timeout=5,
        )
        packets = health(al, "tv").packets
        counted = _metric(al, "hearth_audio_rtp_packets_total", stream="tv")
        age = _metric(al, "hearth_audio_rtp_last_packet_age_seconds", stream="tv")
        assert age >= 2.0, f"tv's last packet only {age} s ago, yet down"
        time.sleep(1)
        assert health(al, "tv").packets == packets
        assert _metric(al, "hearth_audio_rtp_packets_total", stream="tv") == counted
        older = _metric(al, "hearth_audio_rtp_last_packet_age_seconds", stream="tv")
        assert older > age, "the age of the last packet keeps growing"
        # The monitor stopped listening; the station sends nothing: check on the wire.
        assert packets_on(al.zones["b"].host, "239.255.0.2", 46000, 2.0) == 0
        assert packets_on(al.zones["b"].host, "239.255.0.1", 46000, 1.0) > 50  # radio still on
        wait_for("zone b silent", lambda: silent(al, "b"), timeout=30)
    finally:
        al.stub.EnableStream(audio_pb2.EnableStreamRequest(name="streams/tv"))
    wait_for("tv up again", lambda: health(al, "tv").up)


def measure(al: AudioLab) -> float:
    """One MeasureSync of zone b against zone a (ms); a recording that fails on a machine
    this busy is UNAVAILABLE and retried, at most twice."""
    failures: list[str] = []
    while True:
        try:
            m = al.stub.MeasureSync(
                audio_pb2.MeasureSyncRequest(zone_a="zones/a", zone_b="zones/b")
            )
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            failures.append(str(exc.details()))
            assert len(failures) <= 2, failures
            continue
        assert m.confidence > 0.8, m
        return m.offset_ms


def fresh_offsets(al: AudioLab, latency_b_ms: int, n: int = 2) -> list[float]:
    """Patch both zones to radio afresh (zone b at ``latency_b_ms``), then MeasureSync
    ``n`` times, within the first seconds of the new receiver sessions.

    A fresh module-rtp-recv session starts playing once its latency's worth of audio is
    buffered, so it starts at its setting; later it adapts its rate, stops correcting
    about 8 ms from its target (a 20 Hz dead band) and wanders (bench_audio_sync.py).
    """
    for zone in ("a", "b"):
        al.stub.UnsubscribeZone(audio_pb2.UnsubscribeZoneRequest(name=f"zones/{zone}"))
    latency_b = audio_pb2.Zone(name="zones/b")
    latency_b.latency.FromMilliseconds(latency_b_ms)
    mask = field_mask_pb2.FieldMask(paths=["latency"])
    al.stub.UpdateZone(audio_pb2.UpdateZoneRequest(zone=latency_b, update_mask=mask))
    for zone in ("a", "b"):
        al.stub.SubscribeZone(
            audio_pb2.SubscribeZoneRequest(name=f"zones/{zone}", stream="streams/radio")
        )
    assert "latency_msec=200" in receivers(al, "a")[0]
    assert f"latency_msec={latency_b_ms}" in receivers(al, "b")[0]
    wait_for("both zones on radio", lambda: plays(al, "a", 440) and plays(al, "b", 440))
    return [measure(al) for _ in range(n)]


# How far apart two fresh receivers start beyond their latency settings, on zones like
# real ones (fixed-period sinks, realtime PulseAudio): the bound for the +40 ms case
# (docs/audio.md "Sync").
START_PRECISION_MS = 2.0
# "Near 0" for equal settings, and what calibration is asked to reach: usually within 1 ms,
# but on a slow day of this shared 2-core machine fresh sessions started 2.3-3.3 ms apart
# (both zones alike, so the +40 ms reading stayed within 2 ms). docs/audio.md "Sync".
NEAR_ZERO_MS = 4.0
# What PulseAudio's module-rtp-recv leaves between two zones once its rate control settles:
# it stops correcting within ~8 ms, and every latency change starts a fresh session, so a
# calibration round cannot land closer than that session's start (a CI run measured
# 38.9 -> -4.2 -> -5.8 -> -7.6 ms: each shift right, each fresh session off by 4-8 ms).
# Calibration is asked for this; the issue on precise sync (Snapcast) is where it gets better.
RATE_CONTROL_MS = 8.0
# A fresh session's start is PulseAudio's, not the measurement's: about one in 15 starts
# 20-25 ms off (every set-up we tried), and on a slow day of this shared 2-core machine
# sessions started up to 8 ms off. So up to three sessions are drawn until one started
# within the bound; each draw is printed. Three in a row outside it fails.
SESSION_DRAWS = 3


def session_offsets(al: AudioLab, latency_b_ms: int, expected: float, bound: float) -> list[float]:
    """Readings of the first of up to SESSION_DRAWS fresh sessions that started within
    ``bound`` of ``expected``.

    Statistically this is the test "at least one of SESSION_DRAWS independent sessions
    starts within the bound" (stopped early once one does), not a retry of a flaky
    measurement: what varies is PulseAudio's session start, whose rate of starting off the
    bound was measured at about 1/15 (docs/audio.md "Sync"). With independent sessions a correct
    service fails it with probability (1/15)^3 = 3e-4; on a slow day when one in four
    sessions starts off, (1/4)^3 = 1.6e-2 - the machine's load, not the service, is then
    what the test reports, and the printed draws show it.
    """
    for draw in range(1, SESSION_DRAWS + 1):
        readings = fresh_offsets(al, latency_b_ms)
        if all(abs(x - expected) <= bound for x in readings):
            break
        print(f"sync: session {draw} started off ({readings} ms, expected {expected} ms)")
    return readings


def test_measure_sync(house: AudioLab) -> None:
    al = house
    baseline(al)
    try:
        # The measurement itself is exact to 0.1 ms (test_sync_math.py); what it measures
        # is PulseAudio. Zones' null sinks are clocked like sound cards (steady_sinks):
        # otherwise a fresh receiver starts anywhere within its sink's render block and
        # two zones differ by up to 30 ms.
        with al.steady_sinks():
            equal = session_offsets(al, 200, 0.0, NEAR_ZERO_MS)
            raised = session_offsets(al, 240, 40.0, START_PRECISION_MS)
        print(f"sync: equal settings {equal} ms, zone b +40 ms {raised} ms")
        assert all(abs(x) <= NEAR_ZERO_MS for x in equal), equal
        assert all(abs(x - 40.0) <= START_PRECISION_MS for x in raised), raised
        # One session measured twice, seconds apart, agrees: the spread is PulseAudio's
        # session start, not the measurement's.
        for pair in (equal, raised):
            assert max(pair) - min(pair) <= 2.0, pair
        value = metric_value(
            scrape(al.metrics), "hearth_audio_sync_offset_seconds", zone_a="a", zone_b="b"
        )
        assert value is not None and abs(value - raised[-1] / 1e3) < 1e-6
    finally:
        baseline(al)


def test_calibrate_sync_brings_zones_together(house: AudioLab) -> None:
    al = house
    baseline(al)
    request = audio_pb2.CalibrateSyncRequest(
        zone_a="zones/a", zone_b="zones/b", tolerance_ms=RATE_CONTROL_MS
    )
    with pytest.raises(grpc.RpcError) as err:
        al.stub.CalibrateSync(audio_pb2.CalibrateSyncRequest(zone_a="zones/a", zone_b="zones/b",
                                                             tolerance_ms=0.1))  # fmt: skip
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tolerance_ms" in str(err.value.details())
    try:
        with al.steady_sinks():
            # The precondition, zone b measurably behind, rests on PulseAudio starting the
            # fresh sessions at their settings (+40 ms); like session_offsets, up to
            # SESSION_DRAWS sessions are drawn until one did (false failure (1/15)^3).
            for draw in range(1, SESSION_DRAWS + 1):
                fresh_offsets(al, 240, n=0)  # zone b 40 ms behind
                start = measure(al)
                if start > 20.0:
                    break
                print(f"sync: session {draw} for calibration started at {start} ms, not ~40")
            cal = al.stub.CalibrateSync(request)
            # Seconds later, independently of the service's last reading: zone b is still
            # with zone a, within the ~8 ms PulseAudio's rate control leaves (docs/audio.md "Sync").
            again = measure(al)
        offsets = [m.offset_ms for m in cal.measurements]
        print(
            f"sync: calibration {offsets} ms, zone b now {cal.zone_b.latency.ToMilliseconds()} ms"
        )
        assert cal.converged, cal
        assert offsets[0] > 20.0, offsets  # it started apart
        assert abs(offsets[-1]) <= RATE_CONTROL_MS, offsets
        assert len(offsets) >= 2  # it changed something
        # Each round shifted zone b's latency by the (rounded) offset it measured: exactly.
        shifted = 240 - sum(round(x) for x in offsets[:-1])
        assert cal.zone_b.latency.ToMilliseconds() == shifted, (offsets, cal.zone_b)
        assert f"latency_msec={cal.zone_b.latency.ToMilliseconds()}" in receivers(al, "b")[0]
        assert abs(again) <= RATE_CONTROL_MS, again
    finally:
        baseline(al)


def test_lost_player_degrades_health_and_recovers(house: AudioLab) -> None:
    al = house
    with grpc.insecure_channel(al.grpc) as channel:
        _lost_player(al, health_pb2_grpc.HealthStub(channel))


def _lost_player(al: AudioLab, health_stub: health_pb2_grpc.HealthStub) -> None:

    def status() -> int:
        return int(health_stub.Check(health_pb2.HealthCheckRequest(service="")).status)

    serving = health_pb2.HealthCheckResponse.SERVING
    assert status() == serving
    al.mpd.stop()
    try:
        wait_for("NOT_SERVING", lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING)
        player = al.stub.GetPlayer(audio_pb2.GetPlayerRequest())
        assert not player.reachable
        with pytest.raises(grpc.RpcError) as err:
            al.stub.ControlPlayer(
                audio_pb2.ControlPlayerRequest(action=audio_pb2.ControlPlayerRequest.ACTION_PLAY)
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert metric_value(scrape(al.metrics), "hearth_audio_player_up") == 0
    finally:
        al.mpd.start()
        al.mpd.play_all()
    wait_for("SERVING again", lambda: status() == serving, timeout=40)
    assert al.stub.GetPlayer(audio_pb2.GetPlayerRequest()).reachable


def test_stall_alarm_when_stream_is_live_but_zone_silent(house: AudioLab) -> None:
    al = house
    baseline(al)
    wait_for("zone b playing 880 Hz", lambda: plays(al, "b", 880), timeout=30)
    mask = field_mask_pb2.FieldMask(paths=["sink"])
    broken = audio_pb2.Zone(name="zones/b", sink="nosuch")
    try:
        al.stub.UpdateZone(audio_pb2.UpdateZoneRequest(zone=broken, update_mask=mask))

        def stalled_status() -> audio_pb2.ZoneStatus | None:
            status = zone_status(al, "b")
            return status if status.stalled else None

        stalled = wait_for("zone b stalled", stalled_status, timeout=15)
        assert (
            stalled is not None
            and stalled.reachable
            and not stalled.receiving
            and "nosuch" in stalled.error
        )
        assert health(al, "tv").up
        wait_for(
            "stalled metric",
            lambda: metric_value(scrape(al.metrics), "hearth_audio_zone_stalled", zone="b") == 1,
            timeout=5,
        )
    finally:
        fixed = audio_pb2.Zone(name="zones/b", sink="")
        al.stub.UpdateZone(audio_pb2.UpdateZoneRequest(zone=fixed, update_mask=mask))
    wait_for("zone b playing again", lambda: plays(al, "b", 880))
    assert not al.stub.GetZone(audio_pb2.GetZoneRequest(name="zones/b")).status.stalled


def test_conflicts_and_sap_age(house: AudioLab) -> None:
    al = house
    baseline(al)
    # Zone a's receiver would follow the foreign announcement too: keep it out of this.
    al.stub.UnsubscribeZone(audio_pb2.UnsubscribeZoneRequest(name="zones/a"))
    intruder_host = al.zones["b"].host
    try:
        wait_for("radio up", lambda: health(al, "radio").up)
        ages: list[float] = []

        def announced_again() -> bool:
            h = health(al, "radio")
            if h.HasField("sap_age"):
                ages.append(h.sap_age.ToNanoseconds() / 1e9)
            return len(ages) > 1 and ages[-1] < ages[-2]

        # The station announces every 5 s: the age saws up and drops at each announcement.
        wait_for("a fresh SAP announcement", announced_again, timeout=15, every=0.3)
        assert min(ages) >= 0 and max(ages) < 8, ages
        assert list(health(al, "radio").conflicts) == []

        proc = start_intruder(intruder_host, "239.255.0.1", 46000, foreign="239.255.9.9")
        try:

            def both_conflicts() -> list[str] | None:
                conflicts = list(health(al, "radio").conflicts)
                return conflicts if len(conflicts) >= 2 else None

            conflicts = wait_for("conflicts on radio", both_conflicts, timeout=10)
            assert conflicts is not None
            senders = [c for c in conflicts if "2 senders on 239.255.0.1:46000" in c]
            assert len(senders) == 1 and intruder_host.ipv4 in senders[0], conflicts
            assert "ssrc=1234abcd" in senders[0], conflicts
            assert al.station.ipv4 in senders[0], conflicts
            foreign = [c for c in conflicts if "foreign stream announced on 239.255.0.1" in c]
            assert len(foreign) == 1, conflicts
            assert "239.255.9.9:5004" in foreign[0] and intruder_host.ipv4 in foreign[0]
            assert list(health(al, "tv").conflicts) == []
        finally:
            intruder_host.stop(proc)
        # Senders count within 5 s, announcements within 15 s: then the group is clean.
        wait_for("conflicts cleared", lambda: not health(al, "radio").conflicts, timeout=25)
    finally:
        baseline(al)


def _sink(al: AudioLab, zone: str, what: str) -> str:
    """``pactl get-sink-<what> speakers`` on the zone's PulseAudio."""
    res = al.zones[zone].pactl(f"get-sink-{what}", "speakers")
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_volume_and_mute_reach_the_zone_sink(house: AudioLab) -> None:
    al = house
    baseline(al)
    volume_mask = field_mask_pb2.FieldMask(paths=["volume"])
    mute_mask = field_mask_pb2.FieldMask(paths=["muted"])
    try:
        zone = al.stub.UpdateZone(
            audio_pb2.UpdateZoneRequest(
                zone=audio_pb2.Zone(name="zones/a", volume=0.5), update_mask=volume_mask
            )
        )
        assert zone.volume == pytest.approx(0.5)
        wait_for("zone a's sink at 50 %", lambda: "/  50% /" in _sink(al, "a", "volume"))
        assert "/ 100% /" in _sink(al, "b", "volume")  # the other zone is untouched
        al.stub.UpdateZone(
            audio_pb2.UpdateZoneRequest(
                zone=audio_pb2.Zone(name="zones/a", muted=True), update_mask=mute_mask
            )
        )
        wait_for("zone a's sink muted", lambda: "Mute: yes" in _sink(al, "a", "mute"))
        assert "/  50% /" in _sink(al, "a", "volume")  # the mask left the volume alone
        # Someone turning the box up and unmuting it by hand: the desired state returns.
        assert al.zones["a"].pactl("set-sink-volume", "speakers", "20%").returncode == 0
        assert al.zones["a"].pactl("set-sink-mute", "speakers", "0").returncode == 0
        wait_for(
            "zone a's sink back at 50 % and muted",
            lambda: "/  50% /" in _sink(al, "a", "volume") and "yes" in _sink(al, "a", "mute"),
            timeout=10,
        )
    finally:
        al.stub.UpdateZone(
            audio_pb2.UpdateZoneRequest(
                zone=audio_pb2.Zone(name="zones/a", volume=1.0, muted=False),
                update_mask=field_mask_pb2.FieldMask(paths=["volume", "muted"]),
            )
        )
    wait_for("zone a's sink restored", lambda: "Mute: no" in _sink(al, "a", "mute"))
    wait_for("zone a's sink at 100 %", lambda: "/ 100% /" in _sink(al, "a", "volume"))


def _senders(al: AudioLab) -> list[str]:
    out = al.station_pulse.pactl("list", "short", "modules").stdout
    return [line for line in out.splitlines() if "module-rtp-send" in line]


def test_restores_station_after_restart(house: AudioLab) -> None:
    al = house
    baseline(al)
    wait_for("zone a playing 440 Hz", lambda: plays(al, "a", 440))
    assert len(_senders(al)) == 2
    before = _metric(al, "hearth_audio_reconcile_actions_total", target="station",
                     action="load_sender")  # fmt: skip
    al.station_pulse.restart()
    try:
        wait_for(
            "both senders loaded again",
            lambda: sorted("239.255.0.1" in s for s in _senders(al)) == [False, True],
        )
        wait_for("radio and tv up", lambda: health(al, "radio").up and health(al, "tv").up)
        wait_for("zone b playing 880 Hz", lambda: plays(al, "b", 880))
        after = _metric(al, "hearth_audio_reconcile_actions_total", target="station",
                        action="load_sender")  # fmt: skip
        assert after >= before + 2
    finally:
        # MPD lost its PulseAudio with the restart; it plays into the new radio sink.
        al.mpd.play_all()
    wait_for("zone a playing 440 Hz again", lambda: plays(al, "a", 440))
