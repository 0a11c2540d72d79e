"""Build a small LAN out of network namespaces, and tear it down without leftovers.

Layout of one lab (``<id>`` is ``<prefix><pid>x<counter>``, unique per live process):

- namespace ``hl-<id>-lan`` holds bridge ``br0`` and one port ``p<index>`` per host;
- namespace ``hl-<id>-<host>`` holds ``lo`` and ``eth0`` (the other end of ``p<index>``);
- ``Host.expose()`` adds a veth ``hle<k>`` in the root namespace (198.19.<k>.1/30) whose
  peer ``exp0`` sits in the host (198.19.<k>.2/30).

Nothing else is created in the root namespace. Every name is recorded in
``/run/hearth-lab/<id>.json`` before it is created, so leftovers of a crashed process can be
found and removed by :func:`sweep_stale` (called by every new :class:`Lab`).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import itertools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple

STATE_DIR = Path("/run/hearth-lab")
NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")
EXPOSE_NET = ipaddress.IPv4Network("198.19.0.0/16")
EXPOSE_SLOTS = 256
EXPOSE_IFNAME = "exp0"
ALIAS_TAG = "hearth-lab"

_NS_RE = re.compile(r"^hl-([a-z]{0,8})(\d+)x(\d+)-([a-z][a-z0-9_-]*)$")
_LINK_RE = re.compile(r"^hle(\d{1,3})$")
_HOST_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_PREFIX_RE = re.compile(r"^[a-z]{0,8}$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_COUNTER = itertools.count()
_CMD_TIMEOUT = 30.0


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _exit_on_sigterm() -> None:
    """Make SIGTERM unwind the program (context managers, atexit) instead of killing it.

    Only where nobody chose a handler yet, and only from the main thread (where Python allows
    setting one): a killed test run or benchmark then still tears its labs down.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_system_exit)


class LabError(RuntimeError):
    """A lab operation failed (the message carries the failing command and its stderr)."""


class LabUnavailable(LabError):
    """Network namespaces cannot be used here (not root, no ``ip netns``, ...)."""


# --------------------------------------------------------------------------- helpers


def _run(
    argv: Sequence[str], *, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=_CMD_TIMEOUT,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if check and res.returncode != 0:
        detail = (res.stderr or res.stdout).strip()
        raise LabError(f"{' '.join(argv)} failed ({res.returncode}): {detail}")
    return res


def _ip(ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def _ip_batch(ns: str, lines: Iterable[str]) -> None:
    _run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def _owner_alive(pid: int, start: int | None) -> bool:
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start is None or stat[1] == start


def _list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _pids_in(namespaces: Iterable[str]) -> list[int]:
    """PIDs of all processes whose network namespace is one of ``namespaces``."""
    ids: set[tuple[int, int]] = set()
    for ns in namespaces:
        with contextlib.suppress(OSError):
            st = os.stat(NETNS_DIR / ns)
            ids.add((st.st_dev, st.st_ino))
    if not ids:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in ids:
            pids.append(int(entry))
    return pids


def _kill_namespaces(namespaces: Sequence[str]) -> list[int]:
    """SIGKILL every process in the namespaces and wait (up to 2 s) for them to go."""
    pids = [p for p in _pids_in(namespaces) if p != os.getpid()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and _pids_in(namespaces):
        time.sleep(0.01)
    return pids


def _delete_namespaces(namespaces: Sequence[str]) -> list[str]:
    """Delete those of ``namespaces`` that exist; return the deleted ones."""
    existing = set(_list_netns())
    gone = []
    for ns in namespaces:
        if ns in existing:
            _ip(None, "netns", "delete", ns, check=False)
            gone.append(ns)
    left = set(namespaces) & set(_list_netns())
    if left:
        raise LabError(f"could not delete namespaces {sorted(left)}")
    return gone


def _link_alias(name: str) -> str | None:
    try:
        return (SYS_NET / name / "ifalias").read_text().strip()
    except OSError:
        return None


def _parse_alias(alias: str | None) -> dict[str, str]:
    if not alias or not alias.startswith(ALIAS_TAG + " "):
        return {}
    return dict(kv.split("=", 1) for kv in alias.split()[1:] if "=" in kv)


def _delete_root_link(name: str, lab_id: str) -> bool:
    """Delete root-namespace link ``name`` only if it is a lab veth tagged with ``lab_id``."""
    if not _LINK_RE.match(name) or _parse_alias(_link_alias(name)).get("id") != lab_id:
        return False
    _ip(None, "link", "delete", "dev", name, check=False)
    return not (SYS_NET / name).exists()


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise sweeps and expose-slot allocation across processes."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exited(pid: int) -> bool:
    """True once ``pid`` (our child) has exited; does not reap it (keeps the pgid reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _terminate(procs: Sequence[subprocess.Popen[Any]], timeout: float) -> None:
    """SIGTERM each process group, wait up to ``timeout``, SIGKILL the groups, reap."""
    live = [p for p in procs if p.returncode is None]
    for p in live:
        _killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    pending = live
    while pending:
        pending = [p for p in pending if not _exited(p.pid)]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    for p in live:  # leaders are not reaped yet, so their pgid cannot have been reused
        _killpg(p.pid, signal.SIGKILL)
    for p in live:
        with contextlib.suppress(ChildProcessError):
            p.wait()


# ----------------------------------------------------------------------- availability

_AVAILABLE: tuple[bool, str] | None = None
_NETEM_KERNEL = False


def lab_available() -> tuple[bool, str]:
    """(True, "") if labs can be built here, else (False, reason). Probes once, cached.

    The probe creates and deletes a namespace (with a veth pair and a bridge in it) and
    checks whether the kernel has ``sch_netem``.
    """
    global _AVAILABLE, _NETEM_KERNEL
    if _AVAILABLE is not None:
        return _AVAILABLE
    if sys.platform != "linux":
        _AVAILABLE = (False, "network namespaces need Linux")
    elif os.geteuid() != 0:
        _AVAILABLE = (False, "network namespaces need root")
    elif shutil.which("ip") is None:
        _AVAILABLE = (False, "iproute2 'ip' not found")
    else:
        probe = f"hl-probe{os.getpid()}x{next(_COUNTER)}-p"
        try:
            _ip(None, "netns", "add", probe)
            try:
                _ip(probe, "link", "add", "name", "v0", "type", "veth", "peer", "name", "v1")
                _ip(probe, "link", "add", "name", "br0", "type", "bridge")
                _run(["ip", "netns", "exec", probe, "true"])
                if shutil.which("tc"):
                    netem = _run(
                        ["tc", "-n", probe, "qdisc", "add", "dev", "v0", "root", "netem"],
                        check=False,
                    )
                    _NETEM_KERNEL = netem.returncode == 0
            finally:
                _ip(None, "netns", "delete", probe, check=False)
            _AVAILABLE = (True, "")
        except LabError as exc:
            _AVAILABLE = (False, f"network namespaces unusable: {exc}")
    return _AVAILABLE


# ---------------------------------------------------------------------- stale sweeping


class LabRecord(NamedTuple):
    """What the state directory and the kernel say about one lab."""

    id: str
    pid: int
    alive: bool
    namespaces: list[str]
    links: list[str]
    workdir: str | None


def _read_states() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(STATE_DIR.glob("*.json")) if STATE_DIR.is_dir() else []:
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue
    return out


def list_labs() -> list[LabRecord]:
    """All labs on this machine, live or stale (from state files and namespace names)."""
    records: dict[str, LabRecord] = {}
    for _, st in _read_states():
        alive = _owner_alive(int(st["pid"]), st.get("start"))
        records[st["id"]] = LabRecord(
            st["id"],
            int(st["pid"]),
            alive,
            list(st["namespaces"]),
            list(st["links"]),
            st.get("workdir"),
        )
    for ns in _list_netns():
        m = _NS_RE.match(ns)
        if not m:
            continue
        lab_id = f"{m[1]}{m[2]}x{m[3]}"
        if lab_id not in records:
            records[lab_id] = LabRecord(
                lab_id, int(m[2]), _owner_alive(int(m[2]), None), [], [], None
            )
        if ns not in records[lab_id].namespaces:
            records[lab_id].namespaces.append(ns)
    return sorted(records.values())


def sweep_stale() -> list[str]:
    """Remove namespaces, root veths, state and workdirs of labs whose process is gone.

    Labs of live processes are never touched. Returns one line per removed item.
    """
    if os.geteuid() != 0:
        return []
    removed: list[str] = []
    with _locked():
        live: set[str] = set()
        stale_ns: list[str] = []
        for path, st in _read_states():
            lab_id = str(st.get("id", ""))
            if _owner_alive(int(st.get("pid", 0)), st.get("start")):
                live.add(lab_id)
                continue
            nss = [n for n in st.get("namespaces", []) if n.startswith(f"hl-{lab_id}-")]
            stale_ns += nss
            for link in st.get("links", []):
                if _delete_root_link(link, lab_id):
                    removed.append(f"link {link} (lab {lab_id})")
            workdir = st.get("workdir")
            if workdir and not st.get("keep") and Path(workdir).is_dir():
                shutil.rmtree(workdir, ignore_errors=True)
                removed.append(f"workdir {workdir}")
            path.unlink(missing_ok=True)
            removed.append(f"state {path}")
        for ns in _list_netns():
            m = _NS_RE.match(ns)
            if m and f"{m[1]}{m[2]}x{m[3]}" not in live and not _owner_alive(int(m[2]), None):
                stale_ns.append(ns)
        stale_ns = sorted(set(stale_ns))
        for pid in _kill_namespaces(stale_ns):
            removed.append(f"process {pid}")
        for ns in stale_ns:
            if ns in _list_netns():
                _ip(None, "netns", "delete", ns, check=False)
                removed.append(f"netns {ns}")
        for name in sorted(os.listdir(SYS_NET)) if SYS_NET.is_dir() else []:
            tag = _parse_alias(_link_alias(name)) if _LINK_RE.match(name) else {}
            if not tag or tag.get("id") in live:
                continue
            start = int(tag["start"]) if tag.get("start", "").isdigit() else None
            alive = _owner_alive(int(tag.get("pid", "0") or 0), start)
            if not alive and _delete_root_link(name, tag.get("id", "")):
                removed.append(f"link {name} (lab {tag.get('id')})")
    return removed


# ------------------------------------------------------------------------------- Host


class Host:
    """One machine of the lab: a namespace with ``lo`` and ``eth0`` on the lab bridge."""

    ifname = "eth0"

    def __init__(
        self,
        lab: Lab,
        name: str,
        index: int,
        mac: str,
        ipv4: ipaddress.IPv4Address,
        ipv6: ipaddress.IPv6Address,
    ) -> None:
        self.lab = lab
        self.name = name
        self.index = index
        self.netns = f"hl-{lab.id}-{name}"
        self.mac = mac
        self.ipv4 = str(ipv4)
        self.ipv4_prefix = lab.ipv4_prefix
        self.ipv6 = str(ipv6)
        self.ipv6_prefix = lab.ipv6_prefix
        self.exposed: str | None = None
        """Host-side address of :meth:`expose`, once called."""
        self.exposed_root: str | None = None
        """Root-namespace side address of :meth:`expose`, once called."""
        self._port = f"p{index}"
        self._logs: dict[int, Path] = {}
        self._impair: subprocess.Popen[Any] | None = None

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r}, ipv4={self.ipv4!r})"

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside this host (for asyncio or custom subprocess use)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float | None = 60.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``subprocess.run`` inside the host, output captured as text."""
        return subprocess.run(
            self.command(argv),
            check=check,
            timeout=timeout,
            input=input,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def popen(
        self, argv: Sequence[str], *, log: bool = False, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the host in its own session; the lab kills it on close.

        ``log=True`` sends stdout and stderr to ``lab.workdir/<host>-<n>.log`` (see
        :meth:`log_path`). Other keyword arguments go to :class:`subprocess.Popen`.
        """
        path = None
        if log:
            path = self.lab.workdir / f"{self.name}-{len(self._logs) + 1}.log"
        proc = self.lab._spawn(self.command(argv), path, **kwargs)
        if path is not None:
            self._logs[proc.pid] = path
        return proc

    def log_path(self, proc: subprocess.Popen[Any]) -> Path | None:
        """The log file of a process started with ``popen(..., log=True)``."""
        return self._logs.get(proc.pid)

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 5.0) -> int:
        """SIGTERM the process group, wait ``timeout`` s for the leader, then SIGKILL what
        is left of the group; return the exit code (negative signal number if killed)."""
        _terminate([proc], timeout)
        return proc.wait()

    def link_down(self) -> None:
        """Take ``eth0`` down (addresses are kept)."""
        _ip(self.netns, "link", "set", "dev", self.ifname, "down")

    def link_up(self) -> None:
        """Bring ``eth0`` up and restore the multicast route the kernel dropped on down."""
        _ip_batch(
            self.netns,
            [
                f"link set dev {self.ifname} up",
                f"route replace 224.0.0.0/4 dev {self.ifname}",
            ],
        )

    def arp(self, enabled: bool) -> None:
        """``ip link set eth0 arp on|off`` (off: the host neither asks nor answers ARP)."""
        _ip(self.netns, "link", "set", "dev", self.ifname, "arp", "on" if enabled else "off")

    def sysctl(self, key: str, value: str | None = None) -> str:
        """Set (if ``value`` is given) and return a sysctl of this host's namespace."""
        if value is not None:
            _run(self.command(["sysctl", "-q", "-w", f"{key}={value}"]))
        return _run(self.command(["sysctl", "-n", key])).stdout.strip()

    def netem(
        self, loss_percent: float = 0.0, delay_ms: float = 0.0, jitter_ms: float = 0.0
    ) -> None:
        """Impair what this host sends: random loss, delay +/- uniform jitter.

        Uses ``tc qdisc replace dev eth0 root netem`` when the kernel has sch_netem,
        otherwise a userspace forwarder in the bridge namespace (see
        :attr:`Lab.netem_backend`). All zero (the default) removes the impairment.
        """
        if not (0.0 <= loss_percent <= 100.0) or delay_ms < 0 or jitter_ms < 0:
            raise ValueError("loss_percent must be in [0, 100], delays >= 0")
        if jitter_ms and not delay_ms:
            raise ValueError("jitter_ms needs delay_ms")
        if not (loss_percent or delay_ms):
            self.clear_netem()
        elif self.lab.netem_backend == "tc":
            args = ["tc", "-n", self.netns, "qdisc", "replace", "dev", self.ifname, "root", "netem"]
            if delay_ms:
                args += ["delay", f"{delay_ms}ms"] + ([f"{jitter_ms}ms"] if jitter_ms else [])
            if loss_percent:
                args += ["loss", f"{loss_percent}%"]
            _run(args)
        else:
            self.lab._impair(self, loss_percent, delay_ms, jitter_ms)

    def clear_netem(self) -> None:
        """Remove any impairment set by :meth:`netem`."""
        if self.lab.netem_backend == "tc":
            _run(["tc", "-n", self.netns, "qdisc", "del", "dev", self.ifname, "root"], check=False)
        else:
            self.lab._unimpair(self)

    def expose(self) -> str:
        """Link this host to the root namespace (a /30, no other routes); return its address.

        Services listening here on that address (or 0.0.0.0) become reachable from the
        root namespace. Idempotent.
        """
        if self.exposed is None:
            self.lab._check_open()
            self.exposed_root, self.exposed = self.lab._expose(self)
        return self.exposed


# -------------------------------------------------------------------------------- Lab


class Lab:
    """A LAN of network namespaces on one bridge. Use as a context manager.

    Teardown (``close()``, idempotent, also run at exit) kills every process in the lab's
    namespaces, deletes the namespaces and root veths, and removes :attr:`workdir`
    (kept if ``HEARTH_LAB_KEEP=1``).
    """

    bridge_ifname = "br0"

    def __init__(
        self,
        prefix: str = "hl",
        *,
        subnet: str = "198.18.0.0/24",
        ipv6_subnet: str = "fd00:18::/64",
    ) -> None:
        ok, reason = lab_available()
        if not ok:
            raise LabUnavailable(reason)
        if not _PREFIX_RE.match(prefix):
            raise ValueError("prefix must be 0-8 lowercase letters")
        self._net = ipaddress.IPv4Network(subnet)
        self._net6 = ipaddress.IPv6Network(ipv6_subnet)
        self.subnet = str(self._net)
        self.ipv4_prefix = self._net.prefixlen
        self.broadcast = str(self._net.broadcast_address)
        self.ipv6_subnet = str(self._net6)
        self.ipv6_prefix = self._net6.prefixlen
        self.netem_backend = "tc" if _NETEM_KERNEL else "userspace"
        """How :meth:`Host.netem` works here: "tc" (sch_netem) or "userspace" (forwarder)."""
        self.keep = os.environ.get("HEARTH_LAB_KEEP") == "1"
        self.hosts: dict[str, Host] = {}
        self._pid = os.getpid()
        self._start = (_proc_stat(self._pid) or ("", 0))[1]
        self._namespaces: list[str] = []
        self._links: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._closed = False
        sweep_stale()
        existing = _list_netns()
        while True:
            self.id = f"{prefix}{self._pid}x{next(_COUNTER)}"
            taken = any(ns.startswith(f"hl-{self.id}-") for ns in existing)
            if not taken and not self._state_path.exists():
                break
        self.bridge_netns = f"hl-{self.id}-lan"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"hearth-lab-{self.id}-"))
        atexit.register(self.close)
        _exit_on_sigterm()
        try:
            self._create_ns(
                self.bridge_netns,
                ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
            )
            _ip_batch(
                self.bridge_netns,
                [
                    "link set dev lo up",
                    f"link add name {self.bridge_ifname} type bridge forward_delay 0"
                    " stp_state 0 mcast_snooping 0",
                    f"link set dev {self.bridge_ifname} up",
                ],
            )
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"Lab({self.id!r}, hosts={list(self.hosts)}, closed={self._closed})"

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except LabError as err:
            if exc is None:
                raise
            warnings.warn(f"hearth_lab teardown: {err}", RuntimeWarning, stacklevel=2)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def add_host(self, name: str, *, mac: str | None = None, ipv4: str | None = None) -> Host:
        """Create a host: namespace ``hl-<id>-<name>`` with ``eth0`` on the bridge.

        Defaults: IPv4 = subnet + 10 + index (.11, .12, ...), IPv6 = ULA subnet + same
        number, MAC ``02:68:6c:00:<index>``. ``eth0`` gets both addresses (no DAD), and
        a route ``224.0.0.0/4 dev eth0``; there is no default route.
        """
        self._check_open()
        if not _HOST_RE.match(name) or name == "lan":
            raise ValueError(f"bad host name {name!r} (lowercase [a-z][a-z0-9_-]*, not 'lan')")
        if name in self.hosts:
            raise ValueError(f"host {name!r} already exists")
        index = len(self.hosts) + 1
        addr4 = ipaddress.IPv4Address(ipv4) if ipv4 else self._net.network_address + 10 + index
        if addr4 not in self._net or addr4 in (
            self._net.network_address,
            self._net.broadcast_address,
        ):
            raise ValueError(f"{addr4} is not a host address of {self.subnet}")
        if str(addr4) in {h.ipv4 for h in self.hosts.values()}:
            raise ValueError(f"{addr4} already used")
        addr6 = self._net6.network_address + 10 + index
        mac = (mac or f"02:68:6c:00:{index >> 8:02x}:{index & 0xFF:02x}").lower()
        if not _MAC_RE.match(mac) or int(mac[:2], 16) & 1:
            raise ValueError(f"bad unicast MAC {mac!r}")
        if mac in {h.mac for h in self.hosts.values()}:
            raise ValueError(f"MAC {mac} already used")
        host = Host(self, name, index, mac, addr4, addr6)
        self._create_ns(host.netns, [])
        self.hosts[name] = host
        _ip(
            self.bridge_netns,
            "link",
            "add",
            "name",
            host._port,
            "type",
            "veth",
            "peer",
            "name",
            host.ifname,
            "netns",
            host.netns,
        )
        _ip_batch(
            self.bridge_netns,
            [
                f"link set dev {host._port} master {self.bridge_ifname}",
                f"link set dev {host._port} up",
            ],
        )
        _run(
            host.command(
                [
                    "sysctl",
                    "-q",
                    "-w",
                    f"net.ipv6.conf.{host.ifname}.accept_dad=0",
                    f"net.ipv6.conf.{host.ifname}.keep_addr_on_down=1",
                    f"net.ipv6.conf.{host.ifname}.accept_ra=0",
                    # Hosts, not routers: a new namespace inherits IPv4 forwarding from the
                    # machine (often on, for Docker), and a forwarding host passes on frames
                    # misdirected to it with traffic of its own.
                    "net.ipv4.ip_forward=0",
                    "net.ipv6.conf.all.forwarding=0",
                ]
            )
        )
        _ip_batch(
            host.netns,
            [
                "link set dev lo up",
                f"link set dev {host.ifname} address {mac}",
                f"addr add {addr4}/{self.ipv4_prefix} broadcast {self.broadcast} dev {host.ifname}",
                f"addr add {addr6}/{self.ipv6_prefix} dev {host.ifname} nodad",
                f"link set dev {host.ifname} up",
                f"route add 224.0.0.0/4 dev {host.ifname}",
            ],
        )
        return host

    def close(self) -> None:
        """Tear everything down. Safe to call twice; does nothing in a forked child."""
        if self._closed or os.getpid() != self._pid:
            return
        self._closed = True
        atexit.unregister(self.close)
        errors: list[str] = []

        def attempt(what: str, fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        attempt("stopping processes", _terminate, self._procs, 3.0)
        attempt("killing namespace processes", _kill_namespaces, self._namespaces)
        for link in self._links:
            attempt(f"deleting {link}", _delete_root_link, link, self.id)
        attempt("deleting namespaces", _delete_namespaces, list(reversed(self._namespaces)))
        if not self.keep:
            attempt("removing workdir", shutil.rmtree, self.workdir)
        attempt("removing state", self._state_path.unlink, True)
        if errors:
            raise LabError("teardown incomplete: " + "; ".join(errors))

    # ----------------------------------------------------------------- internals

    @property
    def _state_path(self) -> Path:
        return STATE_DIR / f"{self.id}.json"

    def _check_open(self) -> None:
        if self._closed:
            raise LabError(f"lab {self.id} is closed")

    def _save_state(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "id": self.id,
            "pid": self._pid,
            "start": self._start,
            "namespaces": self._namespaces,
            "links": self._links,
            "workdir": str(self.workdir),
            "keep": self.keep,
        }
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self._state_path)

    def _create_ns(self, ns: str, sysctls: list[str]) -> None:
        self._namespaces.append(ns)
        self._save_state()  # recorded before it exists, so a crash leaves nothing unknown
        _ip(None, "netns", "add", ns)
        if sysctls:
            _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *sysctls])

    def _spawn(self, argv: list[str], log: Path | None, **kwargs: Any) -> subprocess.Popen[Any]:
        self._check_open()
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs["start_new_session"] = True
        logfile: IO[bytes] | None = None
        if log is not None:
            logfile = open(log, "ab")  # noqa: SIM115 - the child keeps its own copy
            kwargs.setdefault("stdout", logfile)
            kwargs.setdefault("stderr", subprocess.STDOUT)
        try:
            proc: subprocess.Popen[Any] = subprocess.Popen(argv, **kwargs)
        finally:
            if logfile is not None:
                logfile.close()
        self._procs.append(proc)
        return proc

    def _expose(self, host: Host) -> tuple[str, str]:
        with _locked():
            used = {int(m[1]) for n in os.listdir(SYS_NET) if (m := _LINK_RE.match(n))}
            routes = json.loads(
                _ip(None, "-j", "-4", "route", "show", "table", "all").stdout or "[]"
            )
            for route in routes:
                dst = route.get("dst", "default")
                if dst == "default":
                    continue
                net = ipaddress.IPv4Network(dst, strict=False)
                if net.overlaps(EXPOSE_NET):
                    used |= {k for k in range(EXPOSE_SLOTS) if net.overlaps(self._slot(k))}
            free = [k for k in range(EXPOSE_SLOTS) if k not in used]
            if not free:
                raise LabError("no free 198.19.<k>.0/30 slot for expose()")
            k = free[0]
            link = f"hle{k}"
            self._links.append(link)
            self._save_state()
            _ip(
                None,
                "link",
                "add",
                "name",
                link,
                "type",
                "veth",
                "peer",
                "name",
                EXPOSE_IFNAME,
                "netns",
                host.netns,
            )
            alias = f"{ALIAS_TAG} id={self.id} pid={self._pid} start={self._start}"
            _ip(None, "link", "set", "dev", link, "alias", alias)
        slot = self._slot(k)
        root_addr, host_addr = str(slot[1]), str(slot[2])
        for ns in (None, host.netns):
            dev = link if ns is None else EXPOSE_IFNAME
            addr = root_addr if ns is None else host_addr
            _ip(ns, "link", "set", "dev", dev, "addrgenmode", "none")
            _ip(ns, "addr", "add", f"{addr}/30", "dev", dev)
            _ip(ns, "link", "set", "dev", dev, "up")
        return root_addr, host_addr

    @staticmethod
    def _slot(k: int) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((int(EXPOSE_NET.network_address) + (k << 8), 30))

    def _impair(self, host: Host, loss: float, delay: float, jitter: float) -> None:
        q, r = f"q{host.index}", f"r{host.index}"
        if host._impair is not None:
            _terminate([host._impair], 1.0)
            host._impair = None
        else:
            _ip(self.bridge_netns, "link", "add", "name", q, "type", "veth", "peer", "name", r)
            _ip_batch(
                self.bridge_netns,
                [
                    f"link set dev {r} master {self.bridge_ifname}",
                    f"link set dev {r} up",
                    f"link set dev {q} promisc on",
                    f"link set dev {q} up",
                    f"link set dev {host._port} promisc on",
                    f"link set dev {host._port} nomaster",
                ],
            )
        script = Path(__file__).with_name("_impair.py")
        argv = [
            "ip",
            "netns",
            "exec",
            self.bridge_netns,
            sys.executable,
            str(script),
            host._port,
            q,
            str(loss),
            str(delay),
            str(jitter),
        ]
        log = self.workdir / f"lan-impair-{host.name}.log"
        with open(log, "ab") as err:
            proc = self._spawn(argv, None, stdout=subprocess.PIPE, stderr=err)
        host._impair = proc
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10.0)
        line = proc.stdout.readline() if ready else b""
        proc.stdout.close()
        if line.strip() != b"ready":
            raise LabError(f"impairment forwarder for {host.name} did not start; see {log}")

    def _unimpair(self, host: Host) -> None:
        if host._impair is None:
            return
        _terminate([host._impair], 1.0)
        host._impair = None
        _ip_batch(
            self.bridge_netns,
            [
                f"link set dev {host._port} master {self.bridge_ifname}",
                f"link delete dev q{host.index}",
            ],
        )
