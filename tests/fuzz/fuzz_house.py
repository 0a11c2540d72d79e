"""Every hearth service as a real process, in one network namespace, for the fuzz tests.

The backends (wake, audio, ci) and two gateways (one with hearth-edge as its gRPC front door,
one with the Python front door) run inside one lab host (``hearth_lab``), linked to the
test by a /30 veth and nothing else: whatever a generated request makes a service send
(magic packets, multicast RTP, HTTP to a Zuul URL, PulseAudio connections) stays inside
namespaces this test created. wake runs as root there (raw sockets), audio without
PulseAudio (it degrades), ci without a Zuul.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hearth.audio.v1 import audio_pb2
from hearth.ci.v1 import ci_pb2
from hearth.wake.v1 import wake_pb2
from hearth_client.tokens import hash_token
from hearth_lab import Lab
from hearth_testing import ServiceProcess

BACKENDS = ("wake", "audio", "ci")
GATEWAYS = ("edge", "python")  # grpc_front of each gateway process
OPERATOR = "fuzz-operator-token"
AUTH = (("authorization", f"Bearer {OPERATOR}"),)
_HTTP_LINE = re.compile(r"http=http://(\S+?)/")
# The one log format (tests/runtime/test_service_processes.py) and what may not be in it.
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO |DEBUG|WARNING|ERROR) \w+: ")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def child_named(pid: int, comm: str) -> int | None:
    """PID of a direct child of ``pid`` whose command name is ``comm`` (None if none)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == comm:
                    return int(child)
            except OSError:
                continue
    return None


class House:
    def __init__(self, lab: Lab, state_root: Path) -> None:
        self.lab = lab
        self.hub = lab.add_host("hearth")
        self.address = self.hub.expose()
        self.state_root = state_root
        self.procs: dict[str, ServiceProcess] = {}
        self.http: dict[str, str] = {}  # gateway name -> host:port of its HTTP face
        self.baseline_kib: dict[str, int] = {}
        self._channels: dict[str, grpc.Channel] = {}
        net = ipaddress.ip_interface(f"{self.hub.ipv4}/{self.hub.ipv4_prefix}").network
        self.seed_ipv4 = str(net[200])

    # ------------------------------------------------------------------ processes

    def env(self, name: str) -> dict[str, str]:
        service = "gateway" if name in GATEWAYS else name
        prefix = f"HEARTH_{service.upper()}_"
        env = {
            prefix + "GRPC_LISTEN": f"{self.address}:0",
            prefix + "METRICS_LISTEN": f"{self.address}:0",
            prefix + "STATE_DIR": str(self.state_root / name),
            prefix + "SHUTDOWN_GRACE_SECONDS": "2",
        }
        if service == "gateway":
            env.update(
                {
                    prefix + "HTTP_LISTEN": f"{self.address}:0",
                    prefix + "GRPC_FRONT": name,
                    prefix + "TOKENS": json.dumps(
                        [{"name": "fuzz", "role": "operator", "sha256": hash_token(OPERATOR)}]
                    ),
                    prefix + "ANONYMOUS_READ": "false",
                    # The fuzz run calls WakeHost hundreds of times: no per-caller limit.
                    prefix + "RATE_LIMITS": "{}",
                    prefix + "CHECK_INTERVAL_SECONDS": "0.5",
                    # Below the test's own HTTP timeout, so that a call meant to wait ends
                    # with the gateway's 504 rather than the test's read timeout.
                    prefix + "HTTP_TIMEOUT_SECONDS": "8",
                }
            )
            for backend in BACKENDS:
                env[f"{prefix}{backend.upper()}_ADDRESS"] = self.procs[backend].grpc_address
        return env

    def start(self, name: str) -> ServiceProcess:
        service = "gateway" if name in GATEWAYS else name
        proc = ServiceProcess(
            service,
            env=self.env(name),
            prefix=["ip", "netns", "exec", self.hub.netns],
            log_path=self.state_root / f"{name}.log",
        )
        proc.start(timeout=60)
        self.procs[name] = proc
        self._channels.pop(name, None)
        if service == "gateway":
            line = proc.wait_for_line(r"http=http://", timeout=30)
            match = _HTTP_LINE.search(line)
            assert match, line
            self.http[name] = match.group(1)
        return proc

    def start_all(self) -> None:
        for name in (*BACKENDS, *GATEWAYS):
            self.start(name)
        for name in self.procs:
            self.wait_serving(name, timeout=60)
        for name in self.measured():
            self.baseline_kib[name] = self.peak_rss_kib(name)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def restart_all(self) -> None:
        self.stop_all()
        for name in (*BACKENDS, *GATEWAYS):
            self.start(name)
        for name in self.procs:
            self.wait_serving(name, timeout=60)

    def peak_rss_kib(self, name: str) -> int:
        """VmHWM of a process; for "hearth-edge", of the edge gateway's edge child."""
        if name == "hearth-edge":
            gateway = self.procs["edge"].proc
            assert gateway is not None
            child = child_named(gateway.pid, "hearth-edge")
            assert child is not None, "the edge gateway runs no hearth-edge"
            return vm_hwm_kib(child)
        proc = self.procs[name].proc
        assert proc is not None
        return vm_hwm_kib(proc.pid)

    def measured(self) -> list[str]:
        """The processes whose peak memory is watched: every service and the Rust edge."""
        return [*self.procs, "hearth-edge"]

    def alive(self, name: str) -> bool:
        proc = self.procs[name].proc
        return proc is not None and proc.poll() is None

    # -------------------------------------------------------------------- talking

    def channel(self, name: str) -> grpc.Channel:
        if name not in self._channels:
            self._channels[name] = grpc.insecure_channel(
                self.procs[name].grpc_address,
                options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
            )
        return self._channels[name]

    def health(self, name: str) -> int | str:
        """grpc.health.v1 overall status of a process, or the error's code name."""
        md = AUTH if name in GATEWAYS else None
        try:
            reply = health_pb2_grpc.HealthStub(self.channel(name)).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=5, metadata=md
            )
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return int(reply.status)

    def wait_serving(self, name: str, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.health(name) == health_pb2.HealthCheckResponse.SERVING:
                return True
            if time.monotonic() > deadline or not self.alive(name):
                return False
            time.sleep(0.2)

    def log_excerpt(self, name: str, since: int, limit: int = 40) -> str:
        """Error lines and tracebacks a process logged after line ``since``."""
        lines = self.procs[name].lines[since:]
        keep: list[str] = []
        in_tb = False
        for line in lines:
            if "Traceback" in line or " ERROR " in line:
                in_tb = True
            elif line[:4].isdigit():
                in_tb = False
            if in_tb or " ERROR " in line:
                keep.append(line)
        return "\n".join(keep[-limit:])

    def log_problems(
        self, name: str, since: int, known: Sequence[re.Pattern[str]] = ()
    ) -> list[str]:
        """What the log entries written after line ``since`` do wrong: a control character
        other than tab (text from a request passed through), a line outside the shared
        format that is no traceback (a request's newline forging a line), a traceback (an
        unexpected exception). Entries with a line matching a ``known`` pattern (a finding
        with a test of its own) are left out. An entry is its formatted line and the lines
        after it, so lines of an entry begun before ``since`` count with that entry."""
        lines = self.procs[name].lines
        start = since
        while start > 0 and start < len(lines) and not _LOG_LINE.match(lines[start]):
            start -= 1
        entries: list[list[str]] = []
        for line in lines[start:]:
            if _LOG_LINE.match(line) or not entries:
                entries.append([line])
            else:
                entries[-1].append(line)
        problems = []
        for entry in entries:
            if any(p.search(line) for p in known for line in entry):
                continue
            for line in entry:
                bad = sorted({c for c in line if _CONTROL.match(c)})
                if bad:
                    problems.append(f"control characters {bad!r}: {line[:200]!r}")
            rest = entry[1:] if _LOG_LINE.match(entry[0]) else entry
            if any(line.startswith("Traceback") for line in rest):
                last = next((x for x in reversed(rest) if x and not x.startswith(" ")), "")
                problems.append(f"traceback logged ({entry[0][:120]!r}): {last[:200]!r}")
            elif rest:
                problems.append(f"not a log line: {rest[0][:200]!r}")
        return problems

    # ------------------------------------------------------------- stored items

    def seed(self) -> None:
        """One valid item of each kind (again if a fuzzed Delete took it away)."""
        for service, path, request in self._seeds():
            rpc: Any = self.channel(service).unary_unary(
                path, request_serializer=type(request).SerializeToString
            )
            try:
                rpc(request, timeout=10)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise AssertionError(f"seeding {path}: {exc.code()} {exc.details()}") from None

    def seed_requests(self, service: str) -> list[Any]:
        """The seeding requests of ``service``: valid examples for the generators."""
        return [request for s, _, request in self._seeds() if s == service]

    def _seeds(self) -> list[tuple[str, str, Any]]:
        return [
            (
                "wake",
                "/hearth.wake.v1.WakeService/CreateHost",
                wake_pb2.CreateHostRequest(
                    host_id="fuzz-seed",
                    host=wake_pb2.Host(
                        mac="02:00:00:00:00:c8", ipv4=self.seed_ipv4, interface="eth0"
                    ),
                ),
            ),
            (
                "audio",
                "/hearth.audio.v1.AudioService/CreateStream",
                audio_pb2.CreateStreamRequest(
                    stream_id="fuzz-seed", stream=audio_pb2.Stream(source="fuzz_seed")
                ),
            ),
            (
                "audio",
                "/hearth.audio.v1.AudioService/CreateZone",
                audio_pb2.CreateZoneRequest(
                    zone_id="fuzz-seed",
                    zone=audio_pb2.Zone(server="tcp:127.0.0.1:4713", stream="streams/fuzz-seed"),
                ),
            ),
            (
                "ci",
                "/hearth.ci.v1.CiService/CreateWatch",
                ci_pb2.CreateWatchRequest(
                    watch_id="fuzz-seed",
                    watch=ci_pb2.Watch(display_name="seed", filter=ci_pb2.Filter(topic="x")),
                ),
            ),
        ]


def house_at(state_root: Path) -> Iterator[House]:
    with Lab(prefix="fz") as lab:
        house = House(lab, state_root)
        try:
            house.start_all()
            house.seed()
            yield house
        finally:
            house.stop_all()
