"""Just enough Ethernet/ARP/IPv6-ND decoding for the sniffer's hot path, and ARP building.

Decoding is done with slices and ``struct`` instead of scapy dissection: the kernel BPF
filter already dropped unrelated traffic, and what is left must be classified in
microseconds. Anything truncated or malformed decodes to ``None`` (never raises).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from enum import Enum

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_VLAN = (0x8100, 0x88A8)
ARP_HEADER = struct.pack("!HHBB", 1, ETH_P_IP, 6, 4)
ICMPV6 = 58
ND_NEIGHBOR_SOLICIT = 135


class Kind(Enum):
    ARP_REQUEST = "arp-request"
    ARP_REPLY = "arp-reply"
    NEIGHBOR_SOLICIT = "ns"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    OTHER = "other"


@dataclass(slots=True)
class Frame:
    """One decoded frame. For ARP and NS, ``sender_ip``/``target_ip`` are the protocol's
    sender and the address asked for; for plain IP frames they are source and destination."""

    kind: Kind
    src_mac: bytes
    dst_mac: bytes
    sender_ip: str = ""
    target_ip: str = ""


def decode(data: bytes) -> Frame | None:
    """Decode an Ethernet frame (one 802.1Q/802.1ad tag allowed); None if malformed."""
    if len(data) < 14:
        return None
    dst, src = data[0:6], data[6:12]
    ethertype = int.from_bytes(data[12:14], "big")
    offset = 14
    if ethertype in ETH_P_VLAN:
        if len(data) < 18:
            return None
        ethertype = int.from_bytes(data[16:18], "big")
        offset = 18
    body = data[offset:]
    if ethertype == ETH_P_ARP:
        return _arp(src, dst, body)
    if ethertype == ETH_P_IPV6:
        return _ipv6(src, dst, body)
    if ethertype == ETH_P_IP:
        if len(body) < 20 or body[0] >> 4 != 4:
            return None
        return Frame(
            Kind.IPV4, src, dst, socket.inet_ntoa(body[12:16]), socket.inet_ntoa(body[16:20])
        )
    return Frame(Kind.OTHER, src, dst)


def _arp(src: bytes, dst: bytes, body: bytes) -> Frame | None:
    if len(body) < 28 or body[0:6] != ARP_HEADER:
        return None
    op = int.from_bytes(body[6:8], "big")
    if op == 1:
        kind = Kind.ARP_REQUEST
    elif op == 2:
        kind = Kind.ARP_REPLY
    else:
        return None
    return Frame(kind, src, dst, socket.inet_ntoa(body[14:18]), socket.inet_ntoa(body[24:28]))


def _ipv6(src: bytes, dst: bytes, body: bytes) -> Frame | None:
    if len(body) < 40 or body[0] >> 4 != 6:
        return None
    source = str(ipaddress.IPv6Address(body[8:24]))
    if body[6] == ICMPV6 and len(body) >= 64 and body[40] == ND_NEIGHBOR_SOLICIT:
        target = str(ipaddress.IPv6Address(body[48:64]))
        return Frame(Kind.NEIGHBOR_SOLICIT, src, dst, source, target)
    return Frame(Kind.IPV6, src, dst, source, str(ipaddress.IPv6Address(body[24:40])))


def arp_request(src_mac: bytes, src_ip: str, dst_mac: bytes, target_ip: str) -> bytes:
    """An ARP who-has ``target_ip`` frame, sent to ``dst_mac`` (broadcast or unicast)."""
    sender = socket.inet_aton(src_ip or "0.0.0.0")
    return (
        dst_mac
        + src_mac
        + struct.pack("!H", ETH_P_ARP)
        + ARP_HEADER
        + struct.pack("!H", 1)
        + src_mac
        + sender
        + b"\x00" * 6
        + socket.inet_aton(target_ip)
    )


def solicited_node_mac(ipv6: str) -> bytes:
    """Ethernet multicast address an NS for ``ipv6`` is sent to (33:33:ff:xx:xx:xx)."""
    return b"\x33\x33\xff" + ipaddress.IPv6Address(ipv6).packed[-3:]
