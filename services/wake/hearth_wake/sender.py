"""Sending magic packets and liveness probes, on the right interface, with reused sockets.

Sockets are opened once per interface: sending is on the reaction path (demand frame ->
first magic packet), so no per-packet socket set-up. Every frame carries the interface's
own source MAC (a Linux bridge drops frames from 00:00:00:00:00:00).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Sequence
from enum import Enum

from hearth_runtime.logs import kv
from hearth_wake import frames, netif
from hearth_wake.addr import BROADCAST_MAC
from hearth_wake.magic import ETHERTYPE_WOL, magic_payload

log = logging.getLogger("hearth.wake.sender")


class Method(Enum):
    """How a magic packet travels; the value is the proto enum number."""

    ETHERTYPE_0842 = 1
    UDP9_SUBNET_BROADCAST = 2
    UDP7_SUBNET_BROADCAST = 3
    UDP9_LIMITED_BROADCAST = 4
    UDP9_UNICAST = 5

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def parse(cls, text: str) -> Method:
        """By enum name (with or without the SEND_METHOD_ prefix) or short label (``udp9``,
        ``0x0842``, ...), case-insensitive."""
        key = text.strip().lower().removeprefix("send_method_")
        for method in cls:
            if key in (method.name.lower(), method.label):
                return method
        raise ValueError(f"{text!r} is not a send method ({', '.join(m.label for m in cls)})")


_LABELS = {
    Method.ETHERTYPE_0842: "0x0842",
    Method.UDP9_SUBNET_BROADCAST: "udp9",
    Method.UDP7_SUBNET_BROADCAST: "udp7",
    Method.UDP9_LIMITED_BROADCAST: "udp9-limited",
    Method.UDP9_UNICAST: "udp9-unicast",
}
DEFAULT_METHODS = (Method.UDP9_SUBNET_BROADCAST, Method.ETHERTYPE_0842)


class _Sockets:
    def __init__(self, iface: netif.Interface) -> None:
        self.iface = iface
        self.raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.raw.bind((iface.name, 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.name.encode())
        self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.icmp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.name.encode())
        self.icmp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # replies are sniffed

    def close(self) -> None:
        for sock in (self.raw, self.udp, self.icmp):
            sock.close()


class Sender:
    """Magic packets, ARP probes and ICMP echoes, per interface (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: dict[str, _Sockets] = {}
        self._icmp_seq = 0

    def interface(self, name: str) -> netif.Interface:
        return self._get(name).iface

    def _get(self, name: str) -> _Sockets:
        socks = self._sockets.get(name)
        if socks is None:
            with self._lock:
                socks = self._sockets.get(name)
                if socks is None:
                    socks = self._sockets[name] = _Sockets(netif.load(name))
        return socks

    def _try_get(self, name: str, what: str) -> _Sockets | None:
        """The interface's sockets, or None (logged) if it is gone: a vanished interface
        must not stop the caller (the sniffer monitor reports it and health degrades)."""
        try:
            return self._get(name)
        except OSError as exc:
            log.debug(f"{what} not sent", extra=kv(interface=name, error=exc.strerror or exc))
            return None

    def forget(self, name: str) -> None:
        """Drop an interface's sockets (it went away or its addresses changed)."""
        with self._lock:
            socks = self._sockets.pop(name, None)
        if socks is not None:
            socks.close()

    def send_magic(
        self,
        ifname: str,
        mac: bytes,
        ipv4: str,
        methods: Sequence[Method],
        password: bytes = b"",
    ) -> list[str]:
        """Send one magic packet per method; return the labels of those that went out."""
        socks = self._try_get(ifname, "magic packet")
        if socks is None:
            log.warning("magic packet not sent: interface unavailable", extra=kv(interface=ifname))
            return []
        payload = magic_payload(mac, password)
        sent = []
        for method in methods:
            try:
                if method is Method.ETHERTYPE_0842:
                    header = BROADCAST_MAC + socks.iface.mac + struct.pack("!H", ETHERTYPE_WOL)
                    socks.raw.send(header + payload)
                elif method is Method.UDP9_SUBNET_BROADCAST:
                    socks.udp.sendto(payload, (socks.iface.broadcast_for(ipv4), 9))
                elif method is Method.UDP7_SUBNET_BROADCAST:
                    socks.udp.sendto(payload, (socks.iface.broadcast_for(ipv4), 7))
                elif method is Method.UDP9_LIMITED_BROADCAST:
                    socks.udp.sendto(payload, ("255.255.255.255", 9))
                else:
                    socks.udp.sendto(payload, (ipv4, 9))
            except OSError as exc:
                log.warning(
                    "magic packet not sent",
                    extra=kv(interface=ifname, method=method.label, error=exc.strerror or exc),
                )
                continue
            sent.append(method.label)
        return sent

    def arp_probe(self, ifname: str, mac: bytes, ipv4: str) -> None:
        """Unicast ARP who-has to the host's MAC: answered even through host firewalls,
        and not mistaken for a demand by other watchers on the LAN."""
        socks = self._try_get(ifname, "ARP probe")
        if socks is None:
            return
        own = socks.iface.address_for(ipv4)
        frame = frames.arp_request(socks.iface.mac, str(own.ip) if own else "", mac, ipv4)
        try:
            socks.raw.send(frame)
        except OSError as exc:
            log.debug("ARP probe not sent", extra=kv(interface=ifname, error=exc.strerror))

    def icmp_echo(self, ifname: str, ipv4: str) -> None:
        socks = self._try_get(ifname, "ICMP echo")
        if socks is None:
            return
        self._icmp_seq = (self._icmp_seq + 1) & 0xFFFF
        header = struct.pack("!BBHHH", 8, 0, 0, os.getpid() & 0xFFFF, self._icmp_seq)
        body = b"hearth-wake"
        packet = header[:2] + struct.pack("!H", _checksum(header + body)) + header[4:] + body
        try:
            socks.icmp.sendto(packet, (ipv4, 0))
        except OSError as exc:
            log.debug("ICMP echo not sent", extra=kv(interface=ifname, error=exc.strerror))

    def close(self) -> None:
        with self._lock:
            for socks in self._sockets.values():
                socks.close()
            self._sockets.clear()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF
