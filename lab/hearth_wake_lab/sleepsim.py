"""A machine that sleeps, for the lab: ``python -m hearth_wake_lab.sleepsim`` inside a namespace.

Asleep, the namespace sends nothing at all (an nftables ``netdev`` egress drop on the
interface: no ARP replies, no neighbour advertisements, no ICMP), while a raw socket still
receives frames. A valid magic packet for the interface's MAC (with the SecureOn password,
when one is set), over UDP port 9/7 or ethertype 0x0842, wakes it after ``--resume-delay``
seconds. SIGUSR1 puts it to sleep again; SIGTERM leaves it awake and exits.

Every line it prints is a state change a test can wait for::

    asleep
    magic packet via udp9 from 02:68:6c:00:00:01 (waking in 1.0 s)
    awake
"""

from __future__ import annotations

import argparse
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from hearth_wake import frames
from hearth_wake.addr import parse_secureon
from hearth_wake.magic import ETHERTYPE_WOL, find_magic, password_ok
from hearth_wake.sniffer import attach_filter

TABLE = "hearth_sleep"


def _nft(script: str) -> bool:
    res = subprocess.run(["nft", "-f", "-"], input=script, text=True, capture_output=True)
    return res.returncode == 0


class Machine:
    def __init__(self, ifname: str, password: bytes, announce: bool) -> None:
        self.ifname = ifname
        address = Path(f"/sys/class/net/{ifname}/address").read_text().strip()
        self.mac = bytes.fromhex(address.replace(":", ""))
        self.password = password
        self.announce = announce
        self.asleep = False
        self.use_nft = shutil.which("nft") is not None

    def sleep(self) -> None:
        if self.use_nft:
            self.use_nft = _nft(
                f"table netdev {TABLE} {{\n chain out {{\n  type filter hook egress device "
                f"{self.ifname} priority 0; policy drop;\n }}\n}}\n"
            )
        if not self.use_nft:  # what the wake reference describes: no ARP, no ICMP
            subprocess.run(["ip", "link", "set", "dev", self.ifname, "arp", "off"], check=True)
            subprocess.run(["sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1"], check=True)
        self.asleep = True
        _say("asleep")

    def wake(self) -> None:
        if self.use_nft:
            _nft(f"delete table netdev {TABLE}\n")
        else:
            subprocess.run(["ip", "link", "set", "dev", self.ifname, "arp", "on"], check=True)
            subprocess.run(["sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=0"], check=True)
        self.asleep = False
        if self.announce:
            self._announce()
        _say("awake")

    def _announce(self) -> None:
        """A gratuitous ARP, as many machines send when they resume."""
        out = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", self.ifname], capture_output=True, text=True
        ).stdout.split()
        if "inet" not in out:
            return
        ip = out[out.index("inet") + 1].split("/")[0]
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((self.ifname, 0))
            sock.send(frames.arp_request(self.mac, ip, b"\xff" * 6, ip))


def classify(data: bytes, mac: bytes) -> tuple[str, bytes] | None:
    """(how it came, trailer) if ``data`` is a magic packet for ``mac``, else None."""
    if len(data) < 14:
        return None
    ethertype = int.from_bytes(data[12:14], "big")
    if ethertype == ETHERTYPE_WOL:
        how = "0x0842"
    elif ethertype == frames.ETH_P_IP and len(data) >= 42 and data[23] == socket.IPPROTO_UDP:
        ihl = (data[14] & 0x0F) * 4
        port = int.from_bytes(data[14 + ihl + 2 : 14 + ihl + 4], "big")
        how = f"udp{port}"
    else:
        return None
    trailer = find_magic(data[14:], mac)
    return None if trailer is None else (how, trailer)


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hearth_wake_lab.sleepsim", description=__doc__)
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--resume-delay", type=float, default=2.0, metavar="SECONDS")
    parser.add_argument("--password", default="", help="SecureOn password (4 or 6 hex bytes)")
    parser.add_argument("--start", choices=("asleep", "awake"), default="asleep")
    parser.add_argument("--announce", action="store_true", help="gratuitous ARP on resume")
    args = parser.parse_args(argv)
    password = parse_secureon("--password", args.password) if args.password else b""
    machine = Machine(args.iface, password, args.announce)
    requests: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        requests.append("sleep" if signum == signal.SIGUSR1 else "exit")

    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    attach_filter(sock, "ether proto 0x0842 or udp port 9 or udp port 7")
    sock.bind((args.iface, 0x0003))
    if args.start == "asleep":
        machine.sleep()
    else:
        _say("awake")
    wake_at: float | None = None
    try:
        while True:
            while requests:
                if requests.pop(0) == "exit":
                    return 0
                wake_at = None
                machine.sleep()
            timeout = 0.2 if wake_at is None else max(0.0, min(0.2, wake_at - time.monotonic()))
            try:
                ready, _, _ = select.select([sock], [], [], timeout)
            except InterruptedError:
                continue
            if wake_at is not None and time.monotonic() >= wake_at:
                wake_at = None
                machine.wake()
            if not ready:
                continue
            data, address = sock.recvfrom(65535)
            if address[2] == 4:  # our own outgoing frame
                continue
            found = classify(data, machine.mac)
            if found is None:
                continue
            how, trailer = found
            sender = data[6:12].hex(":")
            if not password_ok(trailer, machine.password):
                _say(f"magic packet via {how} from {sender}: wrong SecureOn password")
                continue
            if machine.asleep and wake_at is None:
                wake_at = time.monotonic() + args.resume_delay
                _say(f"magic packet via {how} from {sender} (waking in {args.resume_delay:g} s)")
            else:
                _say(f"magic packet via {how} from {sender} (already awake or waking)")
    finally:
        if machine.asleep:
            machine.wake()


if __name__ == "__main__":
    sys.exit(main())
