"""Lab tools for the wake tests, benchmark and demo (never used by the service itself):
hearth-wake inside a lab host, a sleeping devbox, raw frames sent from any lab host, and a
capture on the lab bridge. Everything here acts only inside a :class:`hearth_lab.Lab`."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet
from scapy.utils import PcapReader

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_lab import Host, Lab
from hearth_testing import ServiceProcess

GRPC_PORT, METRICS_PORT = 50061, 9161
MAGIC_FILTER = "ether proto 0x0842 or udp port 9 or udp port 7"

# Short timings so that a whole wake cycle takes seconds (see the test budget).
FAST_ENV = {
    "HEARTH_WAKE_PROBE_INTERVAL": "1",
    "HEARTH_WAKE_UNKNOWN_TIMEOUT": "1.5",
    "HEARTH_WAKE_WAKE_GRACE": "1",
    "HEARTH_WAKE_FOLLOWUP_WINDOW": "4",
    "HEARTH_WAKE_LOG_LEVEL": "INFO",
}


def seconds(value: float) -> Duration:
    out = Duration()
    out.FromNanoseconds(int(value * 1e9))
    return out


def fast_host(host: Host | None = None, **fields: Any) -> wake_pb2.Host:
    """A Host message with the test timings (alive 3 s, retry 0.5 s, cooldown 1 s)."""
    msg = wake_pb2.Host(
        mac=host.mac if host else fields.pop("mac"),
        ipv4=host.ipv4 if host else fields.pop("ipv4"),
        alive_timeout=seconds(fields.pop("alive_timeout", 3)),
        wake_timeout=seconds(fields.pop("wake_timeout", 8)),
        retry_interval=seconds(fields.pop("retry_interval", 0.5)),
        cooldown=seconds(fields.pop("cooldown", 1)),
        **fields,
    )
    return msg


class WakeService:
    """hearth-wake running inside ``hub``, reached over the hub's exposed address."""

    def __init__(
        self,
        hub: Host,
        state_dir: Path,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.hub = hub
        address = hub.expose()
        self.proc = ServiceProcess(
            "wake",
            env={
                "HEARTH_WAKE_GRPC_LISTEN": f"0.0.0.0:{GRPC_PORT}",
                "HEARTH_WAKE_METRICS_LISTEN": f"0.0.0.0:{METRICS_PORT}",
                "HEARTH_WAKE_STATE_DIR": str(state_dir),
                **FAST_ENV,
                **(env or {}),
            },
            args=args,
            prefix=["ip", "netns", "exec", hub.netns],
        )
        self.address = f"{address}:{GRPC_PORT}"
        self.metrics = f"{address}:{METRICS_PORT}"
        self.channel: grpc.Channel | None = None
        self.stub: wake_pb2_grpc.WakeServiceStub

    def start(self) -> WakeService:
        self.proc.start(timeout=30)
        self.channel = grpc.insecure_channel(self.address)
        self.stub = wake_pb2_grpc.WakeServiceStub(self.channel)
        return self

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.proc.stop()

    def state(self, name: str) -> int:
        return self.stub.GetHost(wake_pb2.GetHostRequest(name=f"hosts/{name}")).state

    def wait_state(self, name: str, state: int, timeout: float = 10.0) -> wake_pb2.Host:
        request = wake_pb2.GetHostRequest(name=f"hosts/{name}")

        def check() -> wake_pb2.Host | None:
            host = self.stub.GetHost(request)
            return host if host.state == state else None

        label = wake_pb2.HostState.Name(state)  # type: ignore[arg-type]
        try:
            return wait_for(check, timeout, f"{name} in state {label}")
        except TimeoutError as exc:
            tail = "\n".join(self.proc.lines[-60:])
            raise TimeoutError(f"{exc}; the service's last lines:\n{tail}") from None

    def wakes(self, name: str) -> list[wake_pb2.Wake]:
        return list(self.stub.ListWakes(wake_pb2.ListWakesRequest(parent=f"hosts/{name}")).wakes)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class SleepSim:
    """``python -m hearth_wake.sleepsim`` in a lab host; its printed lines are collected."""

    def __init__(self, host: Host, *args: str) -> None:
        self.host = host
        self.proc = host.popen(
            [sys.executable, "-m", "hearth_wake.sleepsim", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float = 10.0, after: int = 0) -> int:
        """Index of the first line (from ``after``) containing ``text``."""

        def find() -> int | None:
            for i, line in enumerate(self.lines[after:], start=after):
                if text in line:
                    return i + 1
            return None

        return int(wait_for(find, timeout, f"sleepsim line {text!r} in {self.lines}")) - 1

    def sleep_again(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        self.host.stop(self.proc)


_SENDER = """
import socket, sys, time
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind(("eth0", 0))
gap = float(sys.argv[1])
for frame in sys.argv[2:]:
    sock.send(bytes.fromhex(frame))
    if gap:
        time.sleep(gap)
"""


def send_frames(host: Host, frames: Sequence[bytes | Packet], gap: float = 0.0) -> None:
    """Send raw Ethernet frames from ``host``'s eth0 (``gap`` seconds apart)."""
    hexed = [bytes(f).hex() for f in frames]
    host.run([sys.executable, "-c", _SENDER, str(gap), *hexed], check=True, timeout=120)


def who_has(src: Host, target_ip: str, **arp: Any) -> Packet:
    """A broadcast ARP request from ``src`` (fields overridable)."""
    ether = {"src": src.mac, "dst": arp.pop("dst", "ff:ff:ff:ff:ff:ff")}
    fields = {"op": 1, "hwsrc": src.mac, "psrc": src.ipv4, "pdst": target_ip, **arp}
    return Ether(**ether) / ARP(**fields)


@dataclass
class Captured:
    time: float
    frame: bytes


@contextmanager
def capture(lab: Lab, bpf: str = MAGIC_FILTER) -> Iterator[list[Captured]]:
    """tcpdump on the lab bridge; the list fills when the block ends."""
    path = lab.workdir / f"capture-{time.monotonic_ns()}.pcap"
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.bridge_netns,
            "tcpdump",
            "-i",
            lab.bridge_ifname,
            "-U",
            "-n",
            "--time-stamp-precision=nano",
            "-w",
            str(path),
            bpf,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    proc.stderr.readline()  # "listening on br0 ..." once the capture runs
    out: list[Captured] = []
    try:
        yield out
    finally:
        time.sleep(0.2)  # frames in flight
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        with PcapReader(str(path)) as reader:
            for pkt in reader:
                out.append(Captured(float(pkt.time), bytes(pkt)))


def magic_frames(frames: list[Captured], mac: str) -> list[Captured]:
    needle = b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
    return [c for c in frames if needle in c.frame]


def ping_until_reply(host: Host, address: str, timeout: float = 20.0) -> str:
    """Ping from ``host`` as a person would, again and again, until a reply comes back;
    return ping's output (TimeoutError if none within ``timeout``)."""
    family = ["-6"] if ":" in address else []
    deadline = time.monotonic() + timeout
    while True:
        res = host.run(["ping", *family, "-c", "1", "-W", "1", address], timeout=10)
        if res.returncode == 0:
            return res.stdout
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply from {address} within {timeout} s:\n{res.stdout}")
        time.sleep(0.2)
