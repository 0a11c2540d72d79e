"""Property tests: whatever the LAN sends, the SAP/SDP/RTP parsers and the health monitor
stay total and bounded (in-process, many examples; HEARTH_FUZZ_EXAMPLES raises the count).

The monitor is fed through ``feed_rtp``/``feed_sap`` (the same path its sockets use) with
``listen=False``: an in-process test must not join multicast groups on the machine's real
interfaces. test_audio_lan_input.py sends a few of these datagrams to a real process.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from pathlib import Path

from audio_fuzz_strategies import FUZZ_EXAMPLES, rtp_packet, sap_packet  # type: ignore[import-not-found]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from hearth.audio.v1 import audio_pb2
from hearth_audio.app import AudioApp as Audio
from hearth_audio.config import AudioConfig
from hearth_audio.monitor import (
    MAX_ANNOUNCERS,
    MAX_FOREIGN,
    MAX_SENDERS,
    HealthMonitor,
)
from hearth_audio.rtp import (
    MAX_CLOCK_RATE,
    MAX_LABEL,
    MIN_CLOCK_RATE,
    REASONS,
    Rejected,
    RtpStats,
    decode_rtp,
    decode_sap,
)
from hearth_testing.figures import record

# The bound audio.proto states for one StreamHealth.
HEALTH_BOUND = 16 * 1024

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(sap_packet())
def test_sap_parser_is_total_and_bounded(data: bytes) -> None:
    record("datagrams", "sap, parser", {"tried": 1})
    try:
        sap = decode_sap(data)
    except Rejected as exc:
        assert exc.reason in REASONS
        return
    assert len(sap.session_name) <= MAX_LABEL
    assert len(sap.connection) <= MAX_LABEL + 1
    assert sap.clock_rate == 0 or MIN_CLOCK_RATE <= sap.clock_rate <= MAX_CLOCK_RATE
    assert 0 <= sap.port <= 65535 and -1 <= sap.payload_type <= 127


@FUZZ
@given(st.one_of(rtp_packet(), st.binary(max_size=64)))
def test_rtp_parser_is_total(data: bytes) -> None:
    record("datagrams", "rtp, parser", {"tried": 1})
    try:
        header = decode_rtp(data)
    except Rejected as exc:
        assert exc.reason in REASONS
        return
    assert len(data) >= 12 and data[0] >> 6 == 2
    assert 0 <= header.payload_type <= 127 and 0 <= header.seq <= 0xFFFF


def _snapshot_message(monitor: HealthMonitor, sid: str, now: float) -> audio_pb2.StreamHealth:
    snap = monitor.snapshot(sid, now)
    assert snap is not None
    out = audio_pb2.StreamHealth(
        name=f"streams/{sid}/health", conflicts=snap.conflicts, rejected=snap.rejected
    )
    assert math.isfinite(snap.jitter) and snap.jitter >= 0
    return out


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["sap", "rtp"]),
            st.one_of(sap_packet(), rtp_packet()),
            st.integers(1, 254),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_monitor_stays_bounded_and_other_streams_refresh(
    datagrams: list[tuple[str, bytes, int]],
) -> None:
    """Any datagrams on stream ``hostile``'s group: nothing escapes, every table stays
    within its limit, its health stays below HEALTH_BOUND, and stream ``calm`` (fed clean
    packets in between) keeps counting."""
    record("datagrams", "sap + rtp, through the monitor", {"tried": len(datagrams)})
    loop = asyncio.new_event_loop()
    try:
        monitor = HealthMonitor(loop)
        monitor.watch("hostile", "239.255.0.1", 46000, listen=False)
        monitor.watch("calm", "239.255.0.2", 46000, listen=False)
        now = 1000.0
        for i, (kind, data, host) in enumerate(datagrams):
            sender = f"198.18.0.{host}"
            if kind == "sap":
                monitor.feed_sap("hostile", data, sender)
            else:
                monitor.feed_rtp("hostile", data, sender, now)
            clean = bytes([0x80, 127]) + i.to_bytes(2, "big") + (i * 317).to_bytes(4, "big")
            monitor.feed_rtp("calm", clean + b"\x00\x00\x12\x34" + bytes(64), "198.18.0.9", now)
            now += 0.0066
        w = monitor.watches["hostile"]
        assert len(w.senders) <= MAX_SENDERS and len(w.announcers) <= MAX_ANNOUNCERS
        assert len(w.foreign) <= MAX_FOREIGN and len(w.history) <= 64
        assert set(w.rejected) <= set(REASONS)
        assert MIN_CLOCK_RATE <= w.stats.clock_rate <= MAX_CLOCK_RATE
        msg = _snapshot_message(monitor, "hostile", now)
        assert msg.ByteSize() < HEALTH_BOUND
        assert all(c.isprintable() for c in msg.conflicts)
        calm = monitor.snapshot("calm", now)
        assert calm is not None and calm.packets == len(datagrams) and calm.lost == 0
    finally:
        loop.close()


def test_hundreds_of_long_foreign_announcements_in_process() -> None:
    """The LAN defect at the parser/monitor boundary (the lab test sends it for real):
    300 announcements of foreign streams with 16 000-character names on one group."""
    loop = asyncio.new_event_loop()
    try:
        monitor = HealthMonitor(loop)
        monitor.watch("radio", "239.255.0.1", 46000, listen=False)
        for i in range(300):
            sdp = (
                f"v=0\r\no=- {i} 1 IN IP4 198.18.0.5\r\ns=\x1b[31m{i:04d}{'x' * 16000}\r\n"
                f"c=IN IP4 239.254.1.{i % 250 + 1}\r\nm=audio {5004 + 2 * i} RTP/AVP 10\r\n"
            )
            data = bytes([0x20, 0, i >> 8, i & 0xFF, 198, 18, 0, 5]) + b"application/sdp\0"
            monitor.feed_sap("radio", data + sdp.encode(), "198.18.0.5")
        snap = monitor.snapshot("radio")
        assert snap is not None
        msg = audio_pb2.StreamHealth(conflicts=snap.conflicts)
        assert len(monitor.watches["radio"].foreign) == MAX_FOREIGN
        assert msg.ByteSize() < HEALTH_BOUND, msg.ByteSize()
        assert all("\x1b" not in c for c in snap.conflicts)
        assert any(f"{300 - MAX_FOREIGN} not shown" in c for c in snap.conflicts), snap.conflicts
    finally:
        loop.close()


def test_absurd_clock_rates_are_refused_and_never_reach_the_statistics() -> None:
    for rate in ("9" * 400, "0", "768001", "²"):
        sdp = "v=0\r\nc=IN IP4 239.255.0.1\r\nm=audio 46000 RTP/AVP 127\r\n"
        sdp += f"a=rtpmap:127 L16/{rate}/2\r\n"
        data = bytes([0x20, 0, 0, 1, 0, 0, 0, 0]) + b"application/sdp\0" + sdp.encode()
        try:
            decode_sap(data)
        except Rejected as exc:
            assert exc.reason == "clock_rate", (rate, exc)
        else:
            raise AssertionError(f"clock rate {rate[:20]} accepted")
    stats = RtpStats()
    stats.set_clock_rate(10**400)
    assert stats.clock_rate == 48000 and math.isfinite(stats.jitter_seconds)


async def test_one_streams_health_failure_does_not_freeze_the_others(tmp_path: Path) -> None:
    """The isolation itself: a stream whose health computation raises (here its statistics
    are corrupted to divide by zero, standing in for any bug) is reported as such, counted
    and logged, and the streams after it are still refreshed. The Audio object is the real
    one; its monitor gets datagrams through feed_rtp (no sockets, see the module doc)."""
    audio = Audio(AudioConfig(state_dir=tmp_path))
    await audio.start()
    try:
        for sid, group in (("a", "239.255.0.1"), ("b", "239.255.0.2")):
            audio.desired.put_stream(audio_pb2.Stream(name=f"streams/{sid}", group=group,
                                                      port=46000, ttl=1))  # fmt: skip
            audio.monitor.watch(sid, group, 46000, listen=False)
        now = time.time()
        for i in range(50):
            packet = struct.pack("!BBHII", 0x80, 127, i, i * 317, 0x1234) + bytes(64)
            for sid in ("a", "b"):
                audio.monitor.feed_rtp(sid, packet, "198.18.0.9", now + i * 0.0066)
        audio.monitor.watches["a"].stats.clock_rate = 0  # jitter_seconds now raises
        before = REGISTRY.get_sample_value("hearth_audio_health_errors_total", {"stream": "a"})
        audio.refresh_health()
        after = REGISTRY.get_sample_value("hearth_audio_health_errors_total", {"stream": "a"})
        assert (after or 0) == (before or 0) + 1
        assert audio.health["b"].packets == 50 and audio.health["b"].up
        assert any("ZeroDivisionError" in c for c in audio.health["a"].conflicts)
    finally:
        await audio.close()
