"""RFC 3550 receiver statistics and SAP parsing on crafted packets (no network)."""

from __future__ import annotations

import random
import struct

from hearth_audio.rtp import RtpHeader, RtpStats, parse_rtp, parse_sap

FRAMES = 317  # PulseAudio: 1280-byte payloads of 48 kHz stereo L16
PERIOD = FRAMES / 48000


def packet(seq: int, ts: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 127, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + b"\0" * 1280


def feed(stats: RtpStats, seqs: list[int], arrival_jitter: float = 0.0, start: int = 65000) -> None:
    rng = random.Random(1)
    for i in seqs:
        header = parse_rtp(packet(start + i, 1000 + i * FRAMES))
        assert header is not None
        arrival = i * PERIOD + (
            rng.uniform(-arrival_jitter, arrival_jitter) if arrival_jitter else 0
        )
        stats.add(header, arrival, 1292)


def test_clean_stream_has_no_loss_and_no_jitter() -> None:
    stats = RtpStats()
    feed(stats, list(range(1000)))  # crosses the 16-bit sequence wrap
    assert (stats.received, stats.lost, stats.duplicates, stats.reordered) == (1000, 0, 0, 0)
    assert stats.jitter_seconds < 1e-6


def test_loss_counts_missing_sequence_numbers() -> None:
    stats = RtpStats()
    seqs = [i for i in range(2000) if i % 20 != 7]  # 5% missing
    feed(stats, seqs)
    assert stats.lost == 100 and stats.expected == 2000


def test_duplicates_and_reordering() -> None:
    stats = RtpStats()
    feed(stats, [0, 1, 2, 4, 3, 5, 5, 6])
    assert stats.duplicates == 1 and stats.reordered == 1 and stats.lost == 0


def test_jitter_follows_rfc3550_for_uniform_delay() -> None:
    stats = RtpStats()
    feed(stats, list(range(5000)), arrival_jitter=0.010)
    # |D| of two independent U(-10, 10) ms delays averages 20/3 ms.
    assert 0.0055 < stats.jitter_seconds < 0.0080


def test_ssrc_change_restarts_sequence_and_keeps_counts() -> None:
    stats = RtpStats()
    feed(stats, list(range(100)))
    stats.add(RtpHeader(127, 7, 5, 0x9999), 10.0, 1292)
    stats.add(RtpHeader(127, 9, 5 + 2 * FRAMES, 0x9999), 10.0 + 2 * PERIOD, 1292)
    assert stats.ssrc_changes == 1 and stats.received == 102 and stats.lost == 1


def test_parse_sap_reads_pulseaudio_announcement() -> None:
    sdp = (
        "v=0\r\no=root 123 0 IN IP4 198.18.0.11\r\ns=hearth-radio\r\n"
        "c=IN IP4 239.255.0.1\r\nt=1 0\r\na=recvonly\r\nm=audio 46000 RTP/AVP 127\r\n"
        "a=rtpmap:127 L16/48000/2\r\na=type:broadcast\r\n"
    )
    data = bytes([0x20, 0, 0x12, 0x34, 0, 0, 0, 0]) + b"application/sdp\0" + sdp.encode()
    sap = parse_sap(data)
    assert sap is not None and not sap.deletion
    assert (sap.connection, sap.port, sap.payload_type) == ("239.255.0.1", 46000, 127)
    assert (sap.clock_rate, sap.channels, sap.session_name) == (48000, 2, "hearth-radio")
    deletion = parse_sap(bytes([0x24]) + data[1:])
    assert deletion is not None and deletion.deletion
    assert parse_sap(b"\x00" * 20) is None
