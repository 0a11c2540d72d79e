"""What the wake service needs to know about this machine's interfaces."""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYS_NET = Path("/sys/class/net")
PROC_ROUTE = Path("/proc/net/route")


@dataclass(frozen=True)
class Interface:
    name: str
    index: int
    mac: bytes
    ipv4: tuple[ipaddress.IPv4Interface, ...]

    def address_for(self, target: str) -> ipaddress.IPv4Interface | None:
        """The interface address on ``target``'s subnet (else the first one, else None)."""
        addr = ipaddress.IPv4Address(target)
        for iface in self.ipv4:
            if addr in iface.network:
                return iface
        return self.ipv4[0] if self.ipv4 else None

    def broadcast_for(self, target: str) -> str:
        """Directed broadcast of ``target``'s subnet (falls back to a /24 around it)."""
        iface = self.address_for(target)
        if iface is not None and ipaddress.IPv4Address(target) in iface.network:
            return str(iface.network.broadcast_address)
        return str(ipaddress.IPv4Network(f"{target}/24", strict=False).broadcast_address)


def exists(name: str) -> bool:
    return bool(name) and "/" not in name and (SYS_NET / name).exists()


def load(name: str) -> Interface:
    """Read an interface's index, MAC and IPv4 addresses (raises OSError if it is gone)."""
    mac = bytes.fromhex((SYS_NET / name / "address").read_text().strip().replace(":", ""))
    index = socket.if_nametoindex(name)
    out = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "dev", name],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    addrs: list[ipaddress.IPv4Interface] = []
    for link in json.loads(out.stdout or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                addrs.append(ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}"))
    return Interface(name, index, mac, tuple(addrs))


def route_interface(target: str) -> str | None:
    """The interface the IPv4 routing table (main table) uses to reach ``target``."""
    addr = int(ipaddress.IPv4Address(target))
    best: tuple[int, str] | None = None
    try:
        lines = PROC_ROUTE.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        # Printed in host (little-endian) byte order: "0100A8C0" is 192.168.0.1.
        dest, mask = (struct.unpack("<I", bytes.fromhex(f))[0] for f in (fields[1], fields[7]))
        if addr & mask == dest & mask:
            prefix = bin(mask).count("1")
            if best is None or prefix > best[0]:
                best = (prefix, fields[0])
    return best[1] if best else None
