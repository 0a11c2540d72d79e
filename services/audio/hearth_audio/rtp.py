"""RTP receive statistics (RFC 3550 appendix A) and SAP/SDP parsing; pure, no I/O.

:class:`RtpStats` is fed one packet at a time with its arrival time and keeps the counters a
receiver report would carry: received, expected/lost (A.3), duplicates, reordered, and the
interarrival jitter (6.4.1, A.8). An SSRC change restarts the sequence state (a restarted
sender) and is counted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from typing import Any

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
# Recently seen sequence numbers, to tell a duplicate from a late (reordered) packet.
_SEEN_WINDOW = 512


@dataclass(frozen=True)
class RtpHeader:
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int


def parse_rtp(data: bytes) -> RtpHeader | None:
    """The fixed header of an RTP version 2 packet, or None if it is not one."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    b1, seq, ts, ssrc = struct.unpack_from("!xBHII", data)
    return RtpHeader(b1 & 0x7F, seq, ts, ssrc)


# Clock rates of the static payload types PulseAudio uses; others come from the SDP.
STATIC_RATES = {10: 44100, 11: 44100}


@dataclass
class RtpStats:
    """Receiver statistics of one RTP stream (one SSRC at a time)."""

    clock_rate: int = 48000
    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    ssrc: int | None = None
    ssrc_changes: int = 0
    bytes: int = 0
    jitter_units: float = 0.0
    # Loss accounting across SSRC changes: what earlier SSRCs expected/lost.
    _lost_before: int = 0
    _base_seq: int = 0
    _max_seq: int = 0
    _cycles: int = 0
    _received_this: int = 0
    _transit: float | None = None
    _seen: set[int] = field(default_factory=set)
    _seen_order: list[int] = field(default_factory=list)

    @property
    def expected(self) -> int:
        """Packets the sender sent in the sequence space seen so far (A.3)."""
        return self.lost + self.received

    @property
    def _expected_this(self) -> int:
        if self.ssrc is None:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost (never negative: duplicates do not hide losses)."""
        return self._lost_before + max(0, self._expected_this - self._received_this)

    @property
    def jitter_seconds(self) -> float:
        return self.jitter_units / self.clock_rate

    def add(self, header: RtpHeader, arrival: float, size: int) -> None:
        """Account one packet that arrived at ``arrival`` (seconds, any fixed epoch)."""
        if header.ssrc != self.ssrc:
            self._new_source(header)
        elif not self._update_seq(header.seq):
            return
        self.received += 1
        self._received_this += 1
        self.bytes += size
        # Jitter in timestamp units; the arrival clock is converted to the RTP clock.
        transit = arrival * self.clock_rate - header.timestamp
        if self._transit is not None:
            d = transit - self._transit
            # The RTP timestamp wraps at 2**32: fold the difference back.
            d = (d + (1 << 31)) % (1 << 32) - (1 << 31)
            self.jitter_units += (abs(d) - self.jitter_units) / 16.0
        self._transit = transit

    def _new_source(self, header: RtpHeader) -> None:
        if self.ssrc is not None:
            self.ssrc_changes += 1
            self._lost_before = self.lost
        self.ssrc = header.ssrc
        self._base_seq = self._max_seq = header.seq
        self._cycles = 0
        self._received_this = 0
        self._transit = None
        self._seen.clear()
        self._seen_order.clear()
        self._remember(header.seq)

    def _remember(self, ext_seq: int) -> None:
        self._seen.add(ext_seq)
        self._seen_order.append(ext_seq)
        if len(self._seen_order) > _SEEN_WINDOW:
            self._seen.discard(self._seen_order.pop(0))

    def _update_seq(self, seq: int) -> bool:
        """A.1's update_seq, simplified (no probation): False if the packet is discarded."""
        udelta = (seq - self._max_seq) % RTP_SEQ_MOD
        if 0 < udelta < MAX_DROPOUT:
            if seq < self._max_seq:
                self._cycles += RTP_SEQ_MOD
            self._max_seq = seq
            self._remember(self._cycles + seq)
            return True
        if udelta == 0:
            self.duplicates += 1
            return False
        if udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A very large jump: the sender restarted its sequence; start counting afresh.
            self._lost_before = self.lost
            self._base_seq = self._max_seq = seq
            self._cycles = 0
            self._received_this = 0
            self._seen.clear()
            self._seen_order.clear()
            self._remember(seq)
            return True
        # Behind max_seq by less than MAX_MISORDER: a late packet or a duplicate.
        behind = RTP_SEQ_MOD - udelta
        ext = self._cycles + self._max_seq - behind
        if ext in self._seen:
            self.duplicates += 1
            return False
        self._remember(ext)
        self.reordered += 1
        return True


@dataclass(frozen=True)
class SapAnnouncement:
    deletion: bool
    origin: str
    msg_id_hash: int
    sdp: str
    connection: str = ""
    port: int = 0
    payload_type: int = -1
    clock_rate: int = 0
    channels: int = 0
    session_name: str = ""


def parse_sap(data: bytes) -> SapAnnouncement | None:
    """An RFC 2974 SAP packet carrying SDP, or None if it is not one."""
    if len(data) < 8:
        return None
    flags = data[0]
    if flags >> 5 != 1 or flags & 0x10 or flags & 0x01:  # v1, IPv4 origin only, no compression
        return None
    auth_len = data[1]
    msg_hash = struct.unpack_from("!H", data, 2)[0]
    origin = ".".join(str(b) for b in data[4:8])
    body = data[8 + auth_len * 4 :]
    if body.startswith(b"application/sdp\0"):
        body = body[len(b"application/sdp\0") :]
    elif not body.startswith(b"v=0"):
        nul = body.find(b"\0")
        if nul < 0:
            return None
        body = body[nul + 1 :]
    sdp = body.decode("utf-8", "replace")
    return _parse_sdp(
        SapAnnouncement(bool(flags & 0x04), origin=origin, msg_id_hash=msg_hash, sdp=sdp)
    )


def _parse_sdp(sap: SapAnnouncement) -> SapAnnouncement:
    """``sap`` with the connection, media and rtpmap lines of its SDP filled in."""
    out: dict[str, Any] = {}
    for line in sap.sdp.splitlines():
        key, _, value = line.partition("=")
        if key == "c":
            parts = value.split()
            if len(parts) == 3:
                out["connection"] = parts[2].split("/")[0]
        elif key == "m" and value.startswith("audio"):
            parts = value.split()
            if len(parts) >= 4 and parts[1].isdigit() and parts[3].isdigit():
                out["port"] = int(parts[1])
                out["payload_type"] = int(parts[3])
        elif key == "s":
            out["session_name"] = value
        elif key == "a" and value.startswith("rtpmap:"):
            # a=rtpmap:127 L16/48000/2
            _, _, enc = value.partition(" ")
            bits = enc.split("/")
            if len(bits) >= 2 and bits[1].isdigit():
                out["clock_rate"] = int(bits[1])
            if len(bits) >= 3 and bits[2].isdigit():
                out["channels"] = int(bits[2])
    return replace(sap, **out)
