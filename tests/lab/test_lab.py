"""hearth_lab against real network namespaces (needs root; skipped otherwise)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import hearth_lab
from hearth_lab import Host, Lab, lab_available, pytest_plugin, sweep_stale
from hearth_testing import wait_for

lab = pytest_plugin.lab  # the `lab` fixture, also without tests/conftest.py

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not lab_available()[0], reason=f"hearth_lab: {lab_available()[1]}"),
]

LIB = str(Path(hearth_lab.__file__).resolve().parents[1])


def ping(src: Host, dst: str) -> bool:
    return src.run(["ping", "-c", "1", "-W", "1", dst], timeout=10).returncode == 0


def netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def root_links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def gone(pid: int) -> bool:
    """True if the process no longer exists (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def ns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wait_for_port(addr: str, port: int, timeout: float = 5.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((addr, port), timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_ping_ipv4_and_ipv6(lab: Lab) -> None:
    devbox = lab.add_host("devbox")
    client = lab.add_host("client", mac="02:00:00:00:00:10")
    assert (devbox.ipv4, client.ipv4) == ("198.18.0.11", "198.18.0.12")
    assert (devbox.ipv6, devbox.ipv4_prefix, lab.broadcast) == ("fd00:18::b", 24, "198.18.0.255")
    assert client.mac == "02:00:00:00:00:10"
    assert ping(client, devbox.ipv4) and ping(devbox, client.ipv4)
    assert ping(client, devbox.ipv6) and ping(devbox, client.ipv6)
    routes = devbox.run(["ip", "-4", "route"], check=True).stdout
    assert "224.0.0.0/4 dev eth0" in routes and "default" not in routes
    link = client.run(["ip", "-o", "link", "show", "eth0"], check=True).stdout
    assert "02:00:00:00:00:10" in link
    # hosts do not route, whatever the machine's own forwarding setting
    assert devbox.sysctl("net.ipv4.ip_forward") == "0"
    assert devbox.sysctl("net.ipv6.conf.all.forwarding") == "0"
    assert devbox.sysctl("net.ipv4.icmp_echo_ignore_all", "1") == "1"
    assert not ping(client, devbox.ipv4)


def test_teardown_leaves_nothing_even_on_error() -> None:
    seen: dict[str, object] = {}
    with pytest.raises(RuntimeError, match="boom"), Lab(prefix="t") as the_lab:
        a = the_lab.add_host("a")
        the_lab.add_host("b")
        a.expose()
        # a process group leader plus a background child that is not our direct child
        proc = a.popen(["sh", "-c", "sleep 60 & exec sleep 61"], log=True)

        def both_running() -> list[int] | None:
            pids = ns_pids(a.netns)
            return pids if len(pids) == 2 else None

        pids = wait_for("both sleeps running", both_running, timeout=10)
        seen.update(id=the_lab.id, pids=pids, workdir=the_lab.workdir, proc=proc)
        assert the_lab.id in root_links()  # the expose veth carries the lab id in its alias
        raise RuntimeError("boom")
    lab_id = str(seen["id"])
    assert f"hl-{lab_id}-" not in netns_list()
    assert lab_id not in root_links()
    assert all(gone(p) for p in seen["pids"])  # type: ignore[attr-defined]
    assert seen["proc"].returncode is not None  # type: ignore[attr-defined]
    assert not Path(str(seen["workdir"])).exists()
    assert not Path(f"/run/hearth-lab/{lab_id}.json").exists()
    the_lab.close()  # idempotent


def test_link_down_up(lab: Lab) -> None:
    a, b = lab.add_host("a"), lab.add_host("b")
    assert ping(b, a.ipv4)
    a.link_down()
    assert not ping(b, a.ipv4)
    a.link_up()
    assert ping(b, a.ipv4) and ping(b, a.ipv6)
    assert "224.0.0.0/4 dev eth0" in a.run(["ip", "route"]).stdout


def test_arp_off_hides_host(lab: Lab) -> None:
    a, b = lab.add_host("a"), lab.add_host("b")
    a.arp(False)
    b.run(["ip", "neigh", "flush", "dev", "eth0"], check=True)
    assert not ping(b, a.ipv4)
    a.arp(True)
    b.run(["ip", "neigh", "flush", "dev", "eth0"], check=True)
    assert ping(b, a.ipv4)


def test_netem_loss_and_delay(lab: Lab) -> None:
    a, b = lab.add_host("a"), lab.add_host("b")
    assert ping(b, a.ipv4)
    b.netem(loss_percent=100.0)
    assert not ping(b, a.ipv4)
    b.clear_netem()
    assert ping(b, a.ipv4)
    a.netem(delay_ms=40)
    out = b.run(["ping", "-c", "1", "-W", "2", a.ipv4]).stdout
    rtt = float(out.split("time=")[1].split()[0])
    assert 38.0 <= rtt < 200.0, out
    a.netem()
    assert ping(b, a.ipv4)


def test_expose_reaches_tcp_server(lab: Lab) -> None:
    host = lab.add_host("svc")
    server = textwrap.dedent("""
        import socket
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 8765))
        s.listen()
        while True:
            c, peer = s.accept()
            c.sendall(("hello " + peer[0]).encode())
            c.close()
    """)
    proc = host.popen([sys.executable, "-c", server], log=True)
    addr = host.expose()
    assert addr == host.expose() and addr.startswith("198.19.") and addr.endswith(".2")
    with wait_for_port(addr, 8765) as conn:
        assert conn.recv(100).decode() == f"hello {host.exposed_root}"
    assert "default" not in host.run(["ip", "route"]).stdout
    assert host.stop(proc, timeout=2) == -signal.SIGTERM
    assert gone(proc.pid)


def test_two_labs_at_once() -> None:
    with Lab(prefix="t") as one, Lab(prefix="t") as two:
        assert one.id != two.id and one.bridge_netns != two.bridge_netns
        a1, b1 = one.add_host("a"), one.add_host("b")
        a2 = two.add_host("a")
        assert a1.ipv4 == a2.ipv4  # same addresses, separate wires
        assert ping(b1, a1.ipv4)
        assert not ping(a2, b1.ipv4)  # .12 exists only in lab one
        e1, e2 = a1.expose(), a2.expose()
        assert e1 != e2
        for addr in (e1, e2):
            assert subprocess.run(["ping", "-c", "1", "-W", "1", addr]).returncode == 0


def test_stale_lab_of_dead_process_is_swept(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import json, sys, time
        from hearth_lab import Lab
        lab = Lab(prefix="dead")
        h = lab.add_host("h")
        h.expose()
        p = h.popen(["sleep", "60"])
        print(json.dumps({"id": lab.id, "ns": [lab.bridge_netns, h.netns], "pid": p.pid,
                          "workdir": str(lab.workdir)}), flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": LIB}
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    info = json.loads(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait()
    listing = netns_list()
    assert all(ns in listing for ns in info["ns"]) and not gone(info["pid"])
    assert info["id"] in root_links()
    cli = subprocess.run(
        [sys.executable, "-m", "hearth_lab", "list"], capture_output=True, text=True, env=env
    )
    assert f"{info['id']}\tpid=" in cli.stdout and "STALE" in cli.stdout
    removed = sweep_stale()
    assert any(info["ns"][0] in r for r in removed)
    listing = netns_list()
    assert not any(ns in listing for ns in info["ns"])
    assert info["id"] not in root_links()
    assert gone(info["pid"])
    assert not Path(info["workdir"]).exists()
    cli = subprocess.run(
        [sys.executable, "-m", "hearth_lab", "sweep"], capture_output=True, text=True, env=env
    )
    assert cli.returncode == 0 and info["id"] not in cli.stdout


def test_import_does_not_pull_in_pytest() -> None:
    code = "import sys, hearth_lab; assert 'pytest' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": LIB}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_sigterm_still_tears_the_lab_down() -> None:
    """A test run or benchmark killed with SIGTERM leaves no namespace behind."""
    script = (
        "import sys, time\n"
        "from hearth_lab import Lab\n"
        "lab = Lab(prefix='t')\n"
        "lab.add_host('a')\n"
        "print(lab.id, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ,
        "PYTHONPATH": LIB}
    )  # fmt: skip
    assert proc.stdout is not None
    lab_id = proc.stdout.readline().strip()
    assert lab_id and lab_id in netns_list()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert lab_id not in netns_list()
