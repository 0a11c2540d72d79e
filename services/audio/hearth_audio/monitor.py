"""Stream health: listen to each enabled stream's multicast group like a zone would.

Per stream, two sockets bound to the group itself (so that only that group's packets
arrive): the RTP port and the SAP port 9875. Packets are read in the event loop with their
kernel receive time (``SO_TIMESTAMPNS``), so the RFC 3550 jitter does not include our own
scheduling delays. The last SAP announcement of each group is kept so that it can be sent
again right after a zone loads a receiver (which otherwise waits up to 5 s for the next).

Whatever the LAN sends, the monitor's memory and its health report stay bounded: every
per-stream table (senders, announcers, foreign announcements) keeps at most its limit of
entries, evicting the least recently seen (counted in
``hearth_audio_table_evictions_total{table}``); refused datagrams are counted per reason
(``hearth_audio_datagrams_rejected_total{stream,reason}``, StreamHealth.rejected) and logged
at most once a minute per stream and reason. One stream's report is at most a few KiB
(``MAX_*`` below; audio.proto states the bound).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from hearth_audio import metrics
from hearth_audio.rtp import (
    MAX_LABEL,
    STATIC_RATES,
    Rejected,
    RtpStats,
    SapAnnouncement,
    decode_rtp,
    decode_sap,
)
from hearth_runtime.logs import kv
from hearth_runtime.text import neutral

log = logging.getLogger("hearth.audio.monitor")

SAP_PORT = 9875
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
_CMSG_SPACE = socket.CMSG_SPACE(16)
_BUF = 65536
UP_AFTER_SILENCE = 2.0  # a stream without packets for this long is down
SENDER_WINDOW = 5.0  # senders seen within this window count as concurrent
SAP_WINDOW = 15.0  # announcements (every 5 s) seen within this window are current
HISTORY_SECONDS = 10.0  # window of loss ratio and bitrate
HISTORY_STEP = 0.25  # at most one history point per this many seconds (<= 42 points)
# Table limits per stream. 16 concurrent senders or announcing hosts on one group is far
# beyond a real conflict; the report names them all up to these limits and counts the rest.
MAX_SENDERS = 16
MAX_ANNOUNCERS = 16
MAX_FOREIGN = 16
LOG_EVERY = 60.0  # a refused datagram is logged at most this often per stream and reason

K = TypeVar("K")


@dataclass
class Snapshot:
    """What GetStreamHealth reports for one stream."""

    up: bool
    packets: int
    lost: int
    duplicates: int
    reordered: int
    loss_ratio: float
    jitter: float
    bitrate: float
    last_packet_age: float | None
    ssrc: int
    ssrc_changes: int
    sap_age: float | None
    conflicts: list[str]
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass
class StreamWatch:
    """Sockets and statistics of one stream's group."""

    group: str
    port: int
    name: str = ""
    stats: RtpStats = field(default_factory=RtpStats)
    senders: dict[tuple[str, int], float] = field(default_factory=dict)
    last_packet: float | None = None
    sap_packet: bytes | None = None
    sap_time: float | None = None
    resent_at: float = 0.0
    announcers: dict[tuple[str, int], float] = field(default_factory=dict)
    foreign: dict[str, float] = field(default_factory=dict)
    history: deque[tuple[float, int, int, int]] = field(default_factory=deque)
    sockets: list[socket.socket] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    foreign_evicted: int = 0
    foreign_evicted_at: float = 0.0
    logged: dict[str, tuple[float, int]] = field(default_factory=dict)  # reason -> (at, since)


def _remember(table: dict[K, float], key: K, now: float, limit: int, name: str) -> bool:
    """``table[key] = now``, keeping the table in least-recently-seen order and at most
    ``limit`` entries; True if an entry had to be evicted (counted per table)."""
    table.pop(key, None)
    table[key] = now
    evicted = False
    while len(table) > limit:
        del table[next(iter(table))]
        metrics.TABLE_EVICTIONS.labels(name).inc()
        evicted = True
    return evicted


def _mreq(group: str, ifindex: int) -> bytes:
    # struct ip_mreqn: multiaddr, address (any), interface index
    return socket.inet_aton(group) + socket.inet_aton("0.0.0.0") + struct.pack("@i", ifindex)


def open_group_socket(group: str, port: int, ifindex: int) -> socket.socket:
    """A UDP socket receiving only ``group:port``, joined on interface ``ifindex`` (0: any)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        sock.bind((group, port))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, _mreq(group, ifindex))
        sock.setblocking(False)
    except Exception:  # OSError, or OverflowError for a port beyond 65535
        sock.close()
        raise
    return sock


def _arrival(ancdata: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack_from("@qq", data)
            return sec + nsec / 1e9
    return time.time()


class HealthMonitor:
    """Listens to the groups of the streams it is told about; computes their health."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interface: str = "") -> None:
        self._loop = loop
        self.interface = interface
        self.ifindex = socket.if_nametoindex(interface) if interface else 0
        self.watches: dict[str, StreamWatch] = {}
        self._sender: socket.socket | None = None

    # ------------------------------------------------------------------- membership

    def watch(self, stream: str, group: str, port: int, listen: bool = True) -> None:
        """Start (or keep) listening to ``stream``'s group; restarts if it moved.

        ``listen=False`` keeps the statistics without opening sockets: datagrams then come
        only through :meth:`feed_rtp` / :meth:`feed_sap` (in-process tests, which must not
        join multicast groups on the machine's real interfaces)."""
        current = self.watches.get(stream)
        if current and (current.group, current.port) == (group, port):
            return
        self.unwatch(stream)
        w = StreamWatch(group, port, stream)
        if not listen:
            self.watches[stream] = w
            return
        rtp: socket.socket | None = None
        try:
            rtp = open_group_socket(group, port, self.ifindex)
            sap = open_group_socket(group, SAP_PORT, self.ifindex)
        except (OSError, OverflowError, ValueError) as exc:
            if rtp is not None:
                rtp.close()
            # A bad group or port (stored before validation existed) must not stop the
            # service: the stream's health shows it as not listened to.
            log.error("cannot listen to group", extra=kv(stream=stream, group=group, err=exc))
            return
        w.sockets = [rtp, sap]
        self._loop.add_reader(rtp.fileno(), self._read_rtp, w, rtp)
        self._loop.add_reader(sap.fileno(), self._read_sap, w, sap)
        self.watches[stream] = w
        log.info("listening", extra=kv(stream=stream, group=group, port=port))

    def unwatch(self, stream: str) -> None:
        w = self.watches.pop(stream, None)
        if w is None:
            return
        for sock in w.sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def close(self) -> None:
        for stream in list(self.watches):
            self.unwatch(stream)
        if self._sender is not None:
            self._sender.close()

    # -------------------------------------------------------------------- receiving

    def _read_rtp(self, w: StreamWatch, sock: socket.socket) -> None:
        while True:
            try:
                data, anc, _, addr = sock.recvmsg(_BUF, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._guarded(w, addr[0], self._on_rtp, w, data, _arrival(anc), addr[0])

    def feed_rtp(self, stream: str, data: bytes, sender: str, arrival: float) -> None:
        """Account one RTP datagram of ``stream`` as if it had arrived on its socket."""
        w = self.watches.get(stream)
        if w is not None:
            self._guarded(w, sender, self._on_rtp, w, data, arrival, sender)

    def feed_sap(self, stream: str, data: bytes, sender: str) -> None:
        """Account one SAP datagram on ``stream``'s group as if it had arrived."""
        w = self.watches.get(stream)
        if w is not None:
            self._guarded(w, sender, self._receive_sap, w, data, sender)

    def _on_rtp(self, w: StreamWatch, data: bytes, arrival: float, sender: str) -> None:
        header = decode_rtp(data)
        w.last_packet = arrival
        # A flood of SSRCs evicts (and counts) the least recent: the report names the latest.
        _remember(w.senders, (sender, header.ssrc), arrival, MAX_SENDERS, "senders")
        rate = STATIC_RATES.get(header.payload_type)
        if rate:
            w.stats.set_clock_rate(rate)
        w.stats.add(header, arrival, len(data))

    def _read_sap(self, w: StreamWatch, sock: socket.socket) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(_BUF)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._guarded(w, addr[0], self._receive_sap, w, data, addr[0])

    def _receive_sap(self, w: StreamWatch, data: bytes, sender: str) -> None:
        self._on_sap(w, decode_sap(data), data, sender)

    def _guarded(self, w: StreamWatch, sender: str, fn: Callable[..., None], *args: object) -> None:
        """Handle one datagram; a refused one is counted, and nothing escapes into the event
        loop (a bug on one packet must not stop this stream's reader, nor the others)."""
        try:
            fn(*args)
        except Rejected as exc:
            self._reject(w, exc.reason, exc.detail, sender)
        except Exception as exc:  # a bug: count it, log it with its traceback (rate-limited)
            self._reject(w, "internal", f"{type(exc).__name__}: {exc}", sender, exc)

    def _reject(
        self,
        w: StreamWatch,
        reason: str,
        detail: str,
        sender: str,
        exc: BaseException | None = None,
    ) -> None:
        w.rejected[reason] = w.rejected.get(reason, 0) + 1
        metrics.DATAGRAMS_REJECTED.labels(w.name, reason).inc()
        now = time.monotonic()
        at, since = w.logged.get(reason, (-LOG_EVERY, 0))
        if now - at < LOG_EVERY:
            w.logged[reason] = (at, since + 1)
            return
        w.logged[reason] = (now, 0)
        log.warning(
            "datagram refused",
            exc_info=exc,
            extra=kv(
                stream=w.name,
                group=w.group,
                reason=reason,
                sender=sender,
                detail=neutral(detail, 120),
                also_refused_since_last_log=since,
            ),
        )

    def _on_sap(self, w: StreamWatch, sap: SapAnnouncement, data: bytes, sender: str) -> None:
        now = time.time()
        if data == w.sap_packet and now - w.resent_at < 1.0:
            return  # our own re-sent copy, looped back
        ours = sap.connection in ("", w.group) and sap.port in (0, w.port)
        if not ours:
            # Bounded and printable: the name is cut by the parser, neutralised here.
            name = neutral(sap.session_name or "?", MAX_LABEL)
            label = f"{name} -> {neutral(sap.connection, MAX_LABEL)}:{sap.port} (from {sender})"
            if _remember(w.foreign, label, now, MAX_FOREIGN, "foreign"):
                w.foreign_evicted += 1
                w.foreign_evicted_at = now
            return
        if sap.deletion:
            return
        if sap.clock_rate:
            w.stats.set_clock_rate(sap.clock_rate)
        w.sap_packet, w.sap_time = data, now
        _remember(w.announcers, (sender, sap.msg_id_hash), now, MAX_ANNOUNCERS, "announcers")

    # ---------------------------------------------------------------------- sending

    def resend_sap(self, stream: str, ttl: int = 1) -> bool:
        """Send the last announcement heard for ``stream`` to its group again."""
        w = self.watches.get(stream)
        if w is None or w.sap_packet is None:
            return False
        if self._sender is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            if self.ifindex:
                sock.setsockopt(
                    socket.IPPROTO_IP, socket.IP_MULTICAST_IF, _mreq("0.0.0.0", self.ifindex)
                )
            self._sender = sock
        self._sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        try:
            w.resent_at = time.time()
            self._sender.sendto(w.sap_packet, (w.group, SAP_PORT))
        except OSError as exc:
            log.warning("SAP resend failed", extra=kv(stream=stream, err=exc))
            return False
        return True

    # ----------------------------------------------------------------------- health

    def snapshot(self, stream: str, now: float | None = None) -> Snapshot | None:
        """Current health of ``stream`` (None if it is not being watched)."""
        w = self.watches.get(stream)
        if w is None:
            return None
        now = time.time() if now is None else now
        s = w.stats
        # GetStreamHealth calls this on demand: one point per HISTORY_STEP keeps the
        # history bounded however often it is called.
        if not w.history or now - w.history[-1][0] >= HISTORY_STEP:
            w.history.append((now, s.expected, s.lost, s.bytes))
        while len(w.history) > 2 and w.history[1][0] <= now - HISTORY_SECONDS:
            w.history.popleft()
        t0, exp0, lost0, bytes0 = w.history[0]
        span = now - t0
        d_expected = s.expected - exp0
        loss_ratio = (s.lost - lost0) / d_expected if d_expected > 0 else 0.0
        bitrate = (s.bytes - bytes0) * 8 / span if span > 0 else 0.0
        age = now - w.last_packet if w.last_packet is not None else None
        for table, window in ((w.senders, SENDER_WINDOW), (w.announcers, SAP_WINDOW)):
            for key in [k for k, seen in table.items() if seen < now - window]:
                del table[key]
        for label in [k for k, seen in w.foreign.items() if seen < now - SAP_WINDOW]:
            del w.foreign[label]
        conflicts = []
        if len(w.senders) > 1:
            who = ", ".join(f"{ip} ssrc={ssrc:08x}" for ip, ssrc in sorted(w.senders))
            conflicts.append(f"{len(w.senders)} senders on {w.group}:{w.port}: {who}")
        if len({ip for ip, _ in w.announcers}) > 1:
            who = ", ".join(sorted({ip for ip, _ in w.announcers}))
            conflicts.append(f"announced by several hosts: {who}")
        conflicts += [f"foreign stream announced on {w.group}: {f}" for f in sorted(w.foreign)]
        if w.foreign_evicted and now - w.foreign_evicted_at < SAP_WINDOW:
            conflicts.append(
                f"more foreign streams announced on {w.group} than shown: {w.foreign_evicted}"
                f" not shown so far (the {MAX_FOREIGN} latest are kept)"
            )
        return Snapshot(
            up=age is not None and age < UP_AFTER_SILENCE,
            packets=s.received,
            lost=s.lost,
            duplicates=s.duplicates,
            reordered=s.reordered,
            loss_ratio=max(0.0, loss_ratio),
            jitter=s.jitter_seconds,
            bitrate=bitrate,
            last_packet_age=age,
            ssrc=s.ssrc or 0,
            ssrc_changes=s.ssrc_changes,
            sap_age=now - w.sap_time if w.sap_time is not None else None,
            conflicts=conflicts,
            rejected=dict(w.rejected),
        )
