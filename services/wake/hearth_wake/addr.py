"""Parsing and matching of the addresses hosts are declared with (MAC, IPv4, IPv6, CIDR).

Every parser raises :class:`InvalidArgument` naming the field, so the same code validates
gRPC requests and the YAML ``hosts:`` list.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from hearth_runtime import InvalidArgument

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")
BROADCAST_MAC = b"\xff" * 6
# Longest accepted texts (before parsing): a bound on what a request can make us store.
MAX_ADDRESS_CHARS = 45  # the longest IPv6 text form (IPv4-embedded)
MAX_REQUESTER_CHARS = 64
MAX_REQUESTERS = 64
MAX_SECUREON_CHARS = 32
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def _text(field: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(field, f"is {len(value)} characters long; at most {limit}")
    return value.strip()


def parse_mac(field: str, value: str) -> str:
    """``"00-11-22-AA-BB-CC"`` -> ``"00:11:22:aa:bb:cc"``; a unicast MAC or INVALID_ARGUMENT."""
    text = _text(field, value, 17).lower()
    if not _MAC.match(text):
        raise InvalidArgument(field, f"{value!r} is not a MAC address like 00:11:22:33:44:55")
    digits = re.sub(r"[^0-9a-f]", "", text)
    mac = ":".join(digits[i : i + 2] for i in range(0, 12, 2))
    if int(digits[:2], 16) & 1:
        raise InvalidArgument(field, f"{mac} is a multicast/broadcast MAC, not a machine's")
    if digits == "0" * 12:
        raise InvalidArgument(field, f"{mac} is not a machine's MAC")
    return mac


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_text(raw: bytes) -> str:
    return raw.hex(":")


def parse_ipv4(field: str, value: str) -> str:
    """A host's own IPv4 address: unicast, reachable on a LAN."""
    text = _text(field, value, MAX_ADDRESS_CHARS)
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(field, f"{value!r} is not an IPv4 address") from None
    if addr.is_multicast or addr.is_loopback or addr.is_reserved or addr in _THIS_NETWORK:
        # is_reserved covers 240.0.0.0/4 and with it 255.255.255.255.
        raise InvalidArgument(field, f"{addr} is not a LAN host's unicast address")
    return str(addr)


def parse_ipv6(field: str, value: str) -> str:
    """A host's own IPv6 address: unicast, no scope id (the host's interface is its scope)."""
    text = _text(field, value, MAX_ADDRESS_CHARS)
    if "%" in text:
        raise InvalidArgument(
            field,
            f"{value!r} has a scope id: give the address without %..., and the interface "
            "in `interface`",
        )
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        raise InvalidArgument(field, f"{value!r} is not an IPv6 address") from None
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback:
        raise InvalidArgument(field, f"{addr} is not a unicast address")
    if addr.ipv4_mapped is not None or addr.is_reserved:
        # ::ffff:a.b.c.d and the other reserved blocks are never a LAN neighbour's address.
        raise InvalidArgument(field, f"{addr} is not a LAN host's IPv6 address")
    return str(addr)


def parse_secureon(field: str, value: str) -> bytes:
    """SecureOn password: 4 or 6 bytes in hex, ``aa:bb:cc:dd`` or ``aabbccddeeff``."""
    digits = re.sub(r"[:\-\s]", "", _text(field, value, MAX_SECUREON_CHARS).lower())
    if not re.fullmatch(r"[0-9a-f]*", digits) or len(digits) not in (8, 12):
        raise InvalidArgument(
            field, "SecureOn password must be 4 or 6 bytes in hex (e.g. aa:bb:cc:dd:ee:ff)"
        )
    return bytes.fromhex(digits)


@dataclass(frozen=True)
class RequesterSet:
    """Requesters named by MAC, IP or CIDR (``only_from`` / ``ignore_from``)."""

    macs: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, field: str, entries: Iterable[str]) -> RequesterSet:
        items = list(entries)
        if len(items) > MAX_REQUESTERS:
            raise InvalidArgument(field, f"has {len(items)} entries; at most {MAX_REQUESTERS}")
        macs: set[str] = set()
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for i, entry in enumerate(items):
            name = f"{field}[{i}]"
            if not isinstance(entry, str):
                raise InvalidArgument(name, "is not a text")
            text = _text(name, entry, MAX_REQUESTER_CHARS).lower()
            if _MAC.match(text):
                macs.add(parse_mac(name, text))
                continue
            if "%" in text:
                raise InvalidArgument(name, f"{entry!r} has a scope id; give it without %...")
            try:
                net = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise InvalidArgument(
                    name, f"{entry!r} is not a MAC, an IP address or a CIDR network"
                ) from None
            if net.is_multicast:
                raise InvalidArgument(name, f"{net} is multicast: no requester has it")
            nets.append(net)
        return cls(frozenset(macs), tuple(nets))

    def __bool__(self) -> bool:
        return bool(self.macs or self.networks)

    def matches(self, mac: str, ip: str) -> bool:
        if mac in self.macs:
            return True
        if not self.networks or not ip:
            return False
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in self.networks if net.version == addr.version)
