"""Capture on one interface with a kernel-side BPF filter, in a thread of its own.

The filter (compiled by scapy through libpcap) lets through only what concerns the
registered hosts: ARP asking for or sent by them, IPv6 neighbour solicitations, and frames
from or to them (liveness, follow-up). Everything else on the LAN is dropped in the kernel
and costs this process nothing. Each frame carries its kernel capture time (SO_TIMESTAMPNS),
which is where the reaction-time metric starts.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterable

from scapy.arch.common import compile_filter, free_filter
from scapy.data import DLT_EN10MB, SO_ATTACH_FILTER
from scapy.libs.structures import sock_fprog

from hearth_runtime.logs import kv
from hearth_runtime.supervisor import Supervisor
from hearth_wake import frames
from hearth_wake.hosts import HostSpec

log = logging.getLogger("hearth.wake.sniffer")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_ALLMULTI = 2
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
MATCH_NOTHING = "arp and arp[24:4] = 0"

Handler = Callable[[bytes, float, int], None]


def bpf_expression(hosts: Iterable[HostSpec]) -> str:
    """The kernel filter for ``hosts`` (matches nothing when there are none)."""
    parts: list[str] = []
    arp: list[str] = []
    macs: list[str] = []
    ips: list[str] = []
    want_ns = False
    for spec in hosts:
        hex_ip = "0x" + ipaddress.IPv4Address(spec.ipv4).packed.hex()
        arp += [f"arp[24:4] = {hex_ip}", f"arp[14:4] = {hex_ip}"]
        macs.append(f"ether src {spec.mac}")
        ips.append(f"ip host {spec.ipv4}")
        if spec.ipv6:
            want_ns = True
            ips.append(f"ip6 host {spec.ipv6}")
    if not arp:
        return MATCH_NOTHING
    parts.append(f"(arp and ({' or '.join(arp)}))")
    if want_ns:
        parts.append("(icmp6 and ip6[40] = 135)")
    parts += macs + ips
    return " or ".join(parts)


def check_host_filter(spec: HostSpec) -> None:
    """Raise ValueError if the kernel filter for ``spec`` alone does not compile.

    Validated addresses always compile; this is the last line before a host joins an
    interface's filter, where one bad host would leave every host there unwatched (issue
    11: a scoped IPv6 address did exactly that)."""
    try:
        program = compile_filter(bpf_expression([spec]), linktype=DLT_EN10MB)
    except Exception as exc:
        raise ValueError(f"its kernel filter does not compile: {exc}") from None
    free_filter(program)


def attach_filter(sock: socket.socket, expression: str) -> None:
    program = compile_filter(expression, linktype=DLT_EN10MB)
    try:
        sock.setsockopt(
            socket.SOL_SOCKET, SO_ATTACH_FILTER, sock_fprog(program.bf_len, program.bf_insns)
        )
    finally:
        free_filter(program)


class Sniffer:
    """A raw packet socket on ``ifname`` whose frames go to ``handler(data, ts, pkttype)``
    in the sniffer thread, which runs under ``supervisor`` (task family ``wake-sniffer``).
    ``on_error`` is called (from that thread) if capture breaks, and the thread ends: the
    owner opens a new sniffer (not restarted in place: the socket itself is what broke).
    A socket error (the interface went away) is logged as such; anything unexpected also
    goes to the supervisor, which logs it with its traceback and counts it."""

    def __init__(
        self,
        ifname: str,
        handler: Handler,
        on_error: Callable[[str, Exception], None],
        supervisor: Supervisor,
        realtime: bool = True,
    ) -> None:
        self.ifname = ifname
        self.supervisor = supervisor
        self.task_name = f"wake-sniffer-{ifname}"
        self.realtime = realtime
        self.handler = handler
        self.on_error = on_error
        self.expression = MATCH_NOTHING
        # Protocol 0 until the filter is attached, so nothing unfiltered queues up.
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        attach_filter(self._sock, self.expression)
        self._sock.bind((ifname, ETH_P_ALL))
        index = socket.if_nametoindex(ifname)
        # Neighbour solicitations go to solicited-node multicast groups: receive them all.
        mreq = struct.pack("iHH8s", index, PACKET_MR_ALLMULTI, 0, b"")
        self._sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = False
        self._running = False
        self._finished = threading.Event()
        self._thread_ident: int | None = None

    def set_filter(self, expression: str) -> None:
        if expression != self.expression:
            attach_filter(self._sock, expression)
            self.expression = expression

    def start(self) -> None:
        self._running = True
        self.supervisor.spawn_thread(
            self._run, self.task_name, family="wake-sniffer", restart=False
        )

    @property
    def alive(self) -> bool:
        return self._running

    def stop(self) -> None:
        self._stop = True
        self.supervisor.cancel(self.task_name)
        self._wake_w.send(b"x")
        started = self._running or self._finished.is_set()
        if started and threading.get_ident() != self._thread_ident:
            # The sockets are closed only once the thread no longer selects on them.
            self._finished.wait(2)
        for sock in (self._sock, self._wake_r, self._wake_w):
            sock.close()

    def _run(self, stop: threading.Event) -> None:
        self._thread_ident = threading.get_ident()
        try:
            self._capture(stop)
        except Exception as exc:
            if not (self._stop or stop.is_set()):
                self._running = False
                self.on_error(self.ifname, exc)
            raise
        finally:
            self._running = False
            self._finished.set()

    def _capture(self, stop: threading.Event) -> None:
        _set_priority(self.ifname, self.realtime)
        sock = self._sock
        cmsg_space = socket.CMSG_SPACE(16)
        while not (self._stop or stop.is_set()):
            try:
                ready, _, _ = select.select([sock, self._wake_r], [], [])
                if sock not in ready:
                    continue
                data, ancdata, _flags, address = sock.recvmsg(65535, cmsg_space)
            except OSError as exc:
                if self._stop or stop.is_set():
                    return
                log.error("capture failed", extra=kv(interface=self.ifname, error=exc))
                self._running = False  # before the owner's refresh looks at `alive`
                self.on_error(self.ifname, exc)
                return
            ts = 0.0
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    ts = sec + nsec / 1e9
            try:
                self.handler(data, ts, address[2])
            except Exception:  # a bad frame or a bug must never stop the capture
                log.exception("frame handling failed", extra=kv(interface=self.ifname))


def _set_priority(ifname: str, realtime: bool) -> None:
    """Run the capture thread at the lowest real-time priority when allowed (CAP_SYS_NICE):
    on a busy machine a woken normal thread can wait milliseconds for a CPU, and this thread
    is the reaction path. It sleeps in select() otherwise, so it takes nothing from others.
    Without the capability it stays a normal thread."""
    priority = "normal (capture_realtime is off)"
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            priority = "real-time"
        except OSError:
            priority = "normal (no CAP_SYS_NICE)"
    log.info("capturing", extra=kv(interface=ifname, priority=priority))


def decode_for(
    ifname: str,
    on_frame: Callable[[frames.Frame, float, bytes], None],
    own_mac: bytes,
    on_malformed: Callable[[], None],
    on_frame_count: Callable[[], None],
) -> Handler:
    """A sniffer handler: drop our own outgoing frames, decode, pass on."""

    def handle(data: bytes, ts: float, pkttype: int) -> None:
        if pkttype == PACKET_OUTGOING:
            return
        on_frame_count()
        frame = frames.decode(data)
        if frame is None:
            on_malformed()
            return
        on_frame(frame, ts, own_mac)

    return handle
