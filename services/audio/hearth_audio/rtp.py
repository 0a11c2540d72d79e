"""RTP receive statistics (RFC 3550 appendix A) and SAP/SDP parsing; pure, no I/O.

:class:`RtpStats` is fed one packet at a time with its arrival time and keeps the counters a
receiver report would carry: received, expected/lost (A.3), duplicates, reordered, and the
interarrival jitter (6.4.1, A.8). An SSRC change restarts the sequence state (a restarted
sender) and is counted.

The parsers are *total*: whatever bytes the LAN sends, :func:`decode_rtp` and
:func:`decode_sap` return a value or raise :class:`Rejected` with a short, fixed reason
(used as a metric label); nothing else escapes. What they return is bounded: labels are cut
(:data:`MAX_LABEL`), numbers are range-checked (clock rates within
:data:`MIN_CLOCK_RATE`-:data:`MAX_CLOCK_RATE`).
"""

from __future__ import annotations

import ipaddress
import struct
from collections import deque
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


class Rejected(ValueError):
    """A datagram that is not what it claims to be; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# Every reason a datagram is refused for: a fixed set, so the metric's label is bounded.
REASONS = (
    "rtp_short",  # shorter than the 12-byte header (or its CSRC list / extension)
    "rtp_version",  # not RTP version 2
    "rtp_padding",  # padding longer than the payload
    "sap_short",  # shorter than the 8-byte SAP header (or its authentication data)
    "sap_version",  # not SAP version 1
    "sap_ipv6",  # IPv6 origin: not supported
    "sap_compressed",  # zlib-compressed payload: not supported
    "sap_encrypted",  # encrypted payload: cannot be read
    "sap_payload",  # no SDP payload
    "sdp",  # an SDP line with an impossible value (port, payload type, channels)
    "clock_rate",  # an rtpmap clock rate outside MIN_CLOCK_RATE-MAX_CLOCK_RATE
    "internal",  # the monitor failed on it (a bug; logged with its traceback)
)

# Clock rates accepted from an a=rtpmap line: audio codecs use 8 kHz - 192 kHz; 768 kHz is
# the highest PCM rate any sound hardware offers. Anything else is a broken or hostile
# announcement (a 400-digit rate made the jitter computation overflow).
MIN_CLOCK_RATE, MAX_CLOCK_RATE = 1, 768_000
MAX_CHANNELS = 64
# Session names and other text taken from an announcement are cut to this many characters.
MAX_LABEL = 64


def decode_rtp(data: bytes) -> RtpHeader:
    """The fixed header of an RTP version 2 packet; :class:`Rejected` if it is not one."""
    if len(data) < 12:
        raise Rejected("rtp_short", f"{len(data)} bytes")
    if data[0] >> 6 != 2:
        raise Rejected("rtp_version", str(data[0] >> 6))
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    header_len = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension: 4-byte header + length in 32-bit words
        if len(data) < header_len + 4:
            raise Rejected("rtp_short", "extension header cut")
        header_len += 4 + 4 * struct.unpack_from("!H", data, header_len + 2)[0]
    if len(data) < header_len:
        raise Rejected("rtp_short", f"header of {header_len} bytes in {len(data)}")
    if b0 & 0x20 and (len(data) == header_len or data[-1] > len(data) - header_len):
        raise Rejected("rtp_padding")
    return RtpHeader(b1 & 0x7F, seq, ts, ssrc)


def parse_rtp(data: bytes) -> RtpHeader | None:
    """The fixed header of an RTP version 2 packet, or None if it is not one."""
    try:
        return decode_rtp(data)
    except Rejected:
        return None


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
    _seen_order: deque[int] = field(default_factory=deque)

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

    def set_clock_rate(self, rate: int) -> None:
        """Use ``rate`` (Hz) from now on; a rate outside the accepted range is ignored
        (the parsers refuse such rates before they get here: this is the last line)."""
        if MIN_CLOCK_RATE <= rate <= MAX_CLOCK_RATE and rate != self.clock_rate:
            self.clock_rate = rate
            self._transit = None  # transit times in the old unit are meaningless now

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
            self._seen.discard(self._seen_order.popleft())

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


def decode_sap(data: bytes) -> SapAnnouncement:
    """An RFC 2974 SAP packet carrying SDP; :class:`Rejected` (with its reason) otherwise."""
    if len(data) < 8:
        raise Rejected("sap_short", f"{len(data)} bytes")
    flags = data[0]
    if flags >> 5 != 1:
        raise Rejected("sap_version", str(flags >> 5))
    if flags & 0x10:
        raise Rejected("sap_ipv6")
    if flags & 0x01:
        raise Rejected("sap_compressed")
    if flags & 0x02:
        raise Rejected("sap_encrypted")
    auth_len = data[1]
    if len(data) < 8 + auth_len * 4:
        raise Rejected("sap_short", "authentication data cut")
    msg_hash = struct.unpack_from("!H", data, 2)[0]
    origin = ".".join(str(b) for b in data[4:8])
    body = data[8 + auth_len * 4 :]
    if body.startswith(b"application/sdp\0"):
        body = body[len(b"application/sdp\0") :]
    elif not body.startswith(b"v=0"):
        nul = body.find(b"\0")
        if nul < 0:
            raise Rejected("sap_payload", "no payload type and no SDP")
        body = body[nul + 1 :]
    sdp = body.decode("utf-8", "replace")
    return _parse_sdp(
        SapAnnouncement(bool(flags & 0x04), origin=origin, msg_id_hash=msg_hash, sdp=sdp)
    )


def parse_sap(data: bytes) -> SapAnnouncement | None:
    """An RFC 2974 SAP packet carrying SDP, or None if it is not one (or is refused)."""
    try:
        return decode_sap(data)
    except Rejected:
        return None


def _number(text: str, low: int, high: int, what: str, reason: str = "sdp") -> int:
    """``text`` as an ASCII decimal within ``low``-``high``; :class:`Rejected` otherwise
    (``str.isdigit`` accepts "²", and ``int`` refuses more than 4300 digits)."""
    if not (text.isascii() and text.isdecimal()) or len(text) > 12:
        raise Rejected(reason, f"{what} {text[:MAX_LABEL]!r}")
    value = int(text)
    if not low <= value <= high:
        raise Rejected(reason, f"{what} {value}")
    return value


def _parse_sdp(sap: SapAnnouncement) -> SapAnnouncement:
    """``sap`` with the connection, media and rtpmap lines of its SDP filled in.

    Text values are cut to :data:`MAX_LABEL` characters (they are shown, after
    ``hearth_runtime.text.neutral``, in health); the connection address is kept only if it
    is an IPv4 address (it is compared with the stream's group)."""
    out: dict[str, Any] = {}
    for line in sap.sdp.splitlines():
        key, _, value = line.partition("=")
        if key == "c":
            parts = value.split()
            if len(parts) == 3:
                address = parts[2].split("/")[0][:MAX_LABEL]
                try:
                    out["connection"] = str(ipaddress.IPv4Address(address))
                except ValueError:
                    out["connection"] = "?" + address  # never equal to a group
        elif key == "m" and value.startswith("audio"):
            parts = value.split()
            if len(parts) >= 4:
                out["port"] = _number(parts[1].split("/")[0], 0, 65535, "port")
                out["payload_type"] = _number(parts[3], 0, 127, "payload type")
        elif key == "s":
            out["session_name"] = value[:MAX_LABEL]
        elif key == "a" and value.startswith("rtpmap:"):
            # a=rtpmap:127 L16/48000/2
            _, _, enc = value.partition(" ")
            bits = enc.split("/")
            if len(bits) >= 2:
                out["clock_rate"] = _number(
                    bits[1].strip(), MIN_CLOCK_RATE, MAX_CLOCK_RATE, "clock rate", "clock_rate"
                )
            if len(bits) >= 3:
                out["channels"] = _number(bits[2].strip(), 1, MAX_CHANNELS, "channels")
    return replace(sap, **out)
