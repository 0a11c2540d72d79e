"""Hypothesis strategies for what a LAN can send to the audio monitor: SAP (with SDP) and
RTP datagrams, from well-formed to hostile. Shared by the in-process property tests and the
lab test that sends a few of them to a real hearth-audio.

``HEARTH_FUZZ_EXAMPLES`` sets the number of examples per in-process property (default
300, a few seconds); ``make fuzz``-style runs raise it (e.g. 20000).
"""

from __future__ import annotations

import os
import struct

from hypothesis import strategies as st

FUZZ_EXAMPLES = int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "300"))

# Text that parsers trip over: huge digit strings, non-ASCII digits, controls, bidi.
_nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["²", "٣", "0", "-1", "48000", "768001", "4294967297", "\x1b[2J", "\u202e"]),
    st.integers(min_value=1, max_value=5000).map(lambda n: "9" * n),
    st.integers(min_value=1, max_value=30000).map(lambda n: "x" * n),
)
_number_text = st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), _nasty_text)


@st.composite
def sdp_line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["c", "m", "s", "rtpmap", "o", "raw"]))
    if kind == "c":
        addr = draw(st.one_of(st.ip_addresses(v=4).map(str), _nasty_text))
        return f"c=IN IP4 {addr}" + draw(st.sampled_from(["", "/1", "/255/3"]))
    if kind == "m":
        return f"m=audio {draw(_number_text)} RTP/AVP {draw(_number_text)}"
    if kind == "s":
        return "s=" + draw(_nasty_text)
    if kind == "rtpmap":
        enc = draw(st.sampled_from(["L16", "L24", "opus", ""]))
        rest = "/".join(draw(st.lists(_number_text, min_size=0, max_size=3)))
        return f"a=rtpmap:{draw(_number_text)} {enc}/{rest}"
    if kind == "o":
        return "o=- 1 1 IN IP4 " + draw(_nasty_text)
    return draw(st.text(max_size=80))


@st.composite
def sap_packet(draw: st.DrawFn) -> bytes:
    """A SAP datagram: any flags (v1 or not, IPv6, encrypted, compressed, deletion),
    authentication length, payload type prefix, SDP of random lines, cut anywhere."""
    flags = draw(st.one_of(st.sampled_from([0x20, 0x24]), st.integers(0, 255)))
    auth_len = draw(st.one_of(st.just(0), st.integers(0, 255)))
    head = bytes([flags, auth_len]) + struct.pack("!H", draw(st.integers(0, 0xFFFF)))
    head += bytes(draw(st.lists(st.integers(0, 255), min_size=4, max_size=4)))
    auth = draw(st.binary(min_size=0, max_size=4 * auth_len)) if auth_len else b""
    ptype = draw(st.sampled_from([b"application/sdp\0", b"text/x\0", b"", b"garbage"]))
    lines = draw(st.lists(sdp_line(), max_size=12))
    sdp = ("v=0\r\n" + "\r\n".join(lines)).encode("utf-8", "surrogatepass")
    data = head + auth + ptype + sdp
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    data = data if cut is None else data[:cut]
    return data[:65507]  # the most a UDP datagram carries


@st.composite
def rtp_packet(draw: st.DrawFn) -> bytes:
    """An RTP datagram: every header field drawn over its range (version, padding,
    extension, CSRC count, marker, payload type, sequence, timestamp, SSRC), then CSRCs,
    extension and payload of any length (often too short for what the header claims)."""
    version = draw(st.one_of(st.just(2), st.integers(0, 3)))
    padding, ext = draw(st.booleans()), draw(st.booleans())
    cc, marker, pt = draw(st.integers(0, 15)), draw(st.booleans()), draw(st.integers(0, 127))
    b0 = version << 6 | padding << 5 | ext << 4 | cc
    b1 = marker << 7 | pt
    head = struct.pack(
        "!BBHII",
        b0,
        b1,
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, 0xFFFFFFFF)),
        draw(st.integers(0, 0xFFFFFFFF)),
    )
    body = draw(st.binary(max_size=1400))
    return (
        (head + body)[: draw(st.integers(0, len(head) + len(body)))]
        if draw(st.booleans())
        else head + body
    )


datagram = st.one_of(sap_packet(), rtp_packet(), st.binary(max_size=2000))
