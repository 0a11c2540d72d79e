"""Lab tools for the wake tests, benchmark and demo (never used by the service itself):
hearth-wake inside a lab host, a sleeping devbox, raw frames sent from any lab host, and a
capture on the lab bridge. Everything here acts only inside a :class:`hearth_lab.Lab`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
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
from hearth_runtime.ports import PORTS
from hearth_testing import ServiceProcess, wait_for

GRPC_PORT, METRICS_PORT = PORTS["wake"].grpc, PORTS["wake"].metrics
MAGIC_FILTER = "ether proto 0x0842 or udp port 9 or udp port 7"
# A magic payload for any MAC: six 0xff, then one MAC sixteen times.
MAGIC_PAYLOAD = re.compile(rb"\xff{6}(.{6})\1{15}", re.DOTALL)
# IEEE 802 "local experimental" ethertype: the end-of-capture marker, which nothing else sends.
SENTINEL_ETHERTYPE = 0x88B5

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
            host = wait_for(f"{name} in state {label}", check, timeout)
        except AssertionError as exc:
            tail = "\n".join(self.proc.lines[-60:])
            raise AssertionError(f"{exc}; the service's last lines:\n{tail}") from None
        assert host is not None
        return host

    def wakes(self, name: str) -> list[wake_pb2.Wake]:
        return list(self.stub.ListWakes(wake_pb2.ListWakesRequest(parent=f"hosts/{name}")).wakes)


class SleepSim:
    """``python -m hearth_wake_lab.sleepsim`` in a lab host; its printed lines are collected."""

    def __init__(self, host: Host, *args: str) -> None:
        self.host = host
        self.proc = host.popen(
            [sys.executable, "-m", "hearth_wake_lab.sleepsim", *args],
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

        def find() -> int:  # the index + 1, 0 while not there
            for i, line in enumerate(self.lines[after:], start=after):
                if text in line:
                    return i + 1
            return 0

        try:
            return wait_for(f"sleepsim line {text!r}", find, timeout) - 1
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the simulator printed {self.lines}") from None

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


_SENTINEL_SENDER = """
import socket, sys
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((sys.argv[1], 0))
own = sock.getsockname()[4]
sock.send(b"\\xff" * 6 + own + bytes.fromhex(sys.argv[2]) + bytes.fromhex(sys.argv[3]))
"""


@contextmanager
def capture(lab: Lab, bpf: str = MAGIC_FILTER) -> Iterator[list[Captured]]:
    """tcpdump on the lab bridge; the list fills when the block ends.

    The block's end is marked by a sentinel frame sent on the bridge: the list is read once
    tcpdump has written the sentinel, so every frame that was on the bridge before is in it
    (no guessed sleep for frames in flight). The sentinel itself is left out."""
    path = lab.workdir / f"capture-{time.monotonic_ns()}.pcap"
    token = uuid.uuid4().bytes
    bpf = f"({bpf}) or ether proto {SENTINEL_ETHERTYPE:#06x}"
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
        subprocess.run(
            [
                *("ip", "netns", "exec", lab.bridge_netns, sys.executable, "-c"),
                _SENTINEL_SENDER,
                lab.bridge_ifname,
                SENTINEL_ETHERTYPE.to_bytes(2, "big").hex(),
                token.hex(),
            ],
            check=True,
            timeout=30,
        )
        wait_for("the capture's end marker", lambda: token in path.read_bytes(), timeout=10)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    with PcapReader(str(path)) as reader:
        for pkt in reader:
            data = bytes(pkt)
            if token not in data:
                out.append(Captured(float(pkt.time), data))


def magic_frames(frames: list[Captured], mac: str | None = None) -> list[Captured]:
    """The captured frames holding a magic payload for ``mac`` (None: for any MAC)."""
    if mac is None:
        return [c for c in frames if MAGIC_PAYLOAD.search(c.frame)]
    needle = b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
    return [c for c in frames if needle in c.frame]


def ping_until_reply(host: Host, address: str, timeout: float = 20.0) -> str:
    """Ping from ``host`` as a person would, again and again, until a reply comes back;
    return ping's output (AssertionError if none within ``timeout``)."""
    family = ["-6"] if ":" in address else []

    def ping() -> str:  # its output if answered, else ""
        res = host.run(["ping", *family, "-c", "1", "-W", "1", address], timeout=10)
        return res.stdout if res.returncode == 0 else ""

    return wait_for(f"a reply from {address}", ping, timeout, every=0.2)


# A private network namespace holding loopback and one veth pair (eth0 198.18.0.1/16 and its
# peer), both ends inside it: whatever hearth-wake sends there (probes, magic packets) stays
# in the namespace. Its gRPC API is a Unix socket, which the test reaches from outside.
_PRIVATE_NET = (
    "ip link set lo up"
    " && ip link add eth0 type veth peer name peer0"
    " && ip addr add 198.18.0.1/16 dev eth0"
    " && ip link set peer0 up && ip link set eth0 up"
    ' && exec "$@"'
)


def private_net_prefix() -> list[str] | str:
    """The command prefix running a command in a new private namespace (see above), or why
    there is none here (a string)."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    prefix = ["unshare", *user, "--net", "--", "sh", "-c", _PRIVATE_NET, "sh"]
    try:
        res = subprocess.run(
            [*prefix, "ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no private network namespace: {exc}"
    if res.returncode != 0:
        return f"no private network namespace: {res.stderr.strip()}"
    links = sorted(line.split(":")[1].strip().split("@")[0] for line in res.stdout.splitlines())
    if links != ["eth0", "lo", "peer0"]:
        return f"unexpected links in the private namespace: {links}"
    return prefix


class PrivateWake:
    """hearth-wake in a private network namespace (see ``private_net_prefix``), its state in
    ``state_dir``, reached over a Unix socket; ``restart()`` keeps the state."""

    def __init__(
        self,
        prefix: Sequence[str],
        workdir: Path,
        config: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.prefix = list(prefix)
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = workdir / "wake.yaml"
            self.config_path.write_text(config)
        self.env = env or {}
        self.starts = 0
        self.proc: ServiceProcess | None = None
        self.channel: grpc.Channel | None = None
        self.stub: wake_pb2_grpc.WakeServiceStub

    def _process(self) -> ServiceProcess:
        self.starts += 1
        self.socket = self.workdir / f"wake-{self.starts}.sock"
        args = ["--config", str(self.config_path)] if self.config_path else []
        return ServiceProcess(
            "wake",
            env={
                "HEARTH_WAKE_GRPC_LISTEN": f"unix:{self.socket}",
                "HEARTH_WAKE_METRICS_LISTEN": "127.0.0.1:0",
                "HEARTH_WAKE_STATE_DIR": str(self.state_dir),
                **FAST_ENV,
                **self.env,
            },
            args=args,
            prefix=self.prefix,
        )

    def start(self, timeout: float = 20.0) -> PrivateWake:
        self.proc = self._process()
        self.proc.start(timeout=timeout)
        self.channel = grpc.insecure_channel(f"unix:{self.socket}")
        self.stub = wake_pb2_grpc.WakeServiceStub(self.channel)
        return self

    def stop(self) -> int | None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        return self.proc.stop() if self.proc is not None else None

    def restart(self, timeout: float = 20.0) -> PrivateWake:
        self.stop()
        return self.start(timeout)

    @property
    def output(self) -> str:
        return self.proc.output if self.proc is not None else ""

    def health(self) -> int:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        assert self.channel is not None
        stub = health_pb2_grpc.HealthStub(self.channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)
