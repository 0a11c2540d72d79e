"""The wake service against real frames between network namespaces (needs root).

One lab per module: ``hub`` runs hearth-wake, ``devbox`` runs the sleep simulator,
``client``, ``other`` and ``stranger`` ask for things. Each test registers its own hosts.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import fuzz

from hearth.wake.v1 import wake_pb2
from hearth_lab import Lab, lab_available
from hearth_testing import metric_value, scrape
from hearth_wake.labtools import (
    SleepSim,
    WakeService,
    capture,
    fast_host,
    magic_frames,
    ping_until_reply,
    seconds,
    send_frames,
    wait_for,
    who_has,
)

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not lab_available()[0], reason=f"hearth_lab: {lab_available()[1]}"),
]

H = wake_pb2


class Net:
    def __init__(self, lab: Lab, state_dir: Path) -> None:
        self.lab = lab
        self.hub = lab.add_host("hub")
        self.devbox = lab.add_host("devbox")
        self.client = lab.add_host("client")
        self.other = lab.add_host("other")
        self.stranger = lab.add_host("stranger")
        self.state_dir = state_dir
        self.wake = WakeService(self.hub, state_dir).start()

    def create(self, host_id: str, host: wake_pb2.Host) -> wake_pb2.Host:
        return self.wake.stub.CreateHost(H.CreateHostRequest(host_id=host_id, host=host))

    def delete(self, host_id: str) -> None:
        self.wake.stub.DeleteHost(H.DeleteHostRequest(name=f"hosts/{host_id}"))

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(scrape(self.wake.metrics), name, **labels) or 0.0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    with Lab(prefix="tw") as lab:
        the_net = Net(lab, tmp_path_factory.mktemp("wake-state"))
        try:
            yield the_net
        finally:
            the_net.wake.stop()


def _hub_mode(lab: Lab, on: bool) -> None:
    """With ``on``, MAC learning is off on every bridge port and the table flushed: the
    bridge floods like a hub (or a mirror port), so the watcher also sees unicast frames
    between other hosts. Off restores a learning switch."""
    ns = ["ip", "netns", "exec", lab.bridge_netns]
    for index in range(1, len(lab.hosts) + 1):
        learning = "off" if on else "on"
        subprocess.run(
            [*ns, "bridge", "link", "set", "dev", f"p{index}", "learning", learning], check=True
        )
    subprocess.run(
        [*ns, "ip", "link", "set", "dev", lab.bridge_ifname, "type", "bridge", "fdb_flush"],
        check=True,
    )


def test_ping_wakes_the_sleeping_devbox(net: Net) -> None:
    devbox, client = net.devbox, net.client
    sim = SleepSim(devbox, "--resume-delay", "1")
    sim.wait_line("asleep")
    _hub_mode(net.lab, on=True)
    try:
        net.create("devbox", fast_host(devbox, ipv6=devbox.ipv6))
        net.wake.wait_state("devbox", H.ASLEEP)
        started = time.time()
        ping = client.run(["ping", "-c", "2", "-w", "20", devbox.ipv4], timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert " 0% packet loss" not in ping.stdout or "2 received" in ping.stdout
        sim.wait_line("magic packet via")
        sim.wait_line("awake")
        host = net.wake.wait_state("devbox", H.AWAKE)
        assert host.last_seen.ToNanoseconds() / 1e9 >= started

        wake = net.wake.wakes("devbox")[0]
        assert wake.trigger == H.ARP and wake.outcome == H.WOKE
        assert (wake.requester_mac, wake.requester_ip) == (client.mac, client.ipv4)
        assert wake.packets_sent >= 2 and set(wake.methods) == {"udp9", "0x0842"}
        reaction = wake.reaction.ToNanoseconds() / 1e9
        resume = wake.resume.ToNanoseconds() / 1e9
        assert 0 <= reaction < 0.5
        assert 0.9 <= resume < 5, resume  # the simulator's 1 s resume delay
        # The client's pings after the wake were seen (hub mode): a wake someone wanted.
        wait_for(lambda: net.wake.wakes("devbox")[0].HasField("followed_up"), 10, "follow-up")
        assert net.wake.wakes("devbox")[0].followed_up is True

        assert net.metric("hearth_wake_reaction_seconds_count", host="devbox") == 1
        assert net.metric("hearth_wake_resume_seconds_count", host="devbox") == 1
        assert net.metric("hearth_wake_demands_total", host="devbox", verdict="wake") == 1
        assert net.metric("hearth_wake_packets_sent_total", host="devbox", method="udp9") >= 1
        assert net.metric("hearth_wake_host_up", host="devbox") == 1
        last_seen = net.metric("hearth_wake_host_last_seen_timestamp_seconds", host="devbox")
        assert started <= last_seen <= time.time()

        log = net.wake.proc
        log.wait_for_line(rf"ARP {client.mac} -> who-has {devbox.ipv4}: demand for devbox")
        log.wait_for_line(r"Waking devbox \(udp9, 0x0842\)")
        log.wait_for_line(r"devbox seen alive after \d+\.\d s")

        # Told to sleep again, it is declared asleep and a new demand wakes it again.
        mark = len(sim.lines)
        sim.sleep_again()
        sim.wait_line("asleep", after=mark)
        net.wake.wait_state("devbox", H.ASLEEP, timeout=10)
        log.wait_for_line(r"devbox asleep \(not seen for \d+ s\)")
        log.wait_for_line(r"Pinging devbox: Alive: False \(\d+ s ago\)", timeout=3)
        # As after a long sleep: the client's neighbour entry for the devbox has expired.
        client.run(["ip", "neigh", "flush", "dev", "eth0"], check=True)
        ping = client.run(["ping", "-c", "1", "-w", "20", devbox.ipv4], timeout=30)
        assert ping.returncode == 0, ping.stdout + log.output
        net.wake.wait_state("devbox", H.AWAKE)
        assert len(net.wake.wakes("devbox")) == 2
    finally:
        _hub_mode(net.lab, on=False)
        sim.stop()
        net.delete("devbox")


def test_ipv6_neighbour_solicitation_wakes_the_devbox(net: Net) -> None:
    devbox, client = net.devbox, net.client
    sim = SleepSim(devbox, "--resume-delay", "0.5")
    sim.wait_line("asleep")
    try:
        net.create("devbox6", fast_host(devbox, ipv6=devbox.ipv6))
        net.wake.wait_state("devbox6", H.ASLEEP)
        ping = client.run(["ping", "-6", "-c", "1", "-w", "20", devbox.ipv6], timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        wake = net.wake.wakes("devbox6")[0]
        assert wake.trigger == H.NEIGHBOR_SOLICITATION
        assert wake.requester_ip == client.ipv6 and wake.outcome in (H.WOKE, H.IN_PROGRESS)
        net.wake.proc.wait_for_line(rf"NS {client.mac} -> who-has {devbox.ipv6}: demand")
    finally:
        sim.stop()
        net.delete("devbox6")


PHANTOM_MAC, PHANTOM_IP = "02:00:00:00:99:01", "198.18.0.99"


def test_frames_that_are_not_demands_send_nothing(net: Net) -> None:
    client, other, stranger = net.client, net.other, net.stranger
    # A machine that never answers (asleep), only the client may wake it, never `other`.
    phantom = fast_host(
        mac=PHANTOM_MAC,
        ipv4=PHANTOM_IP,
        only_from=[f"{client.ipv4}/32", other.mac],
        ignore_from=[other.mac],
    )
    net.create("phantom", phantom)
    net.create("awakebox", fast_host(other))  # `other` is up and answers probes
    try:
        net.wake.wait_state("phantom", H.ASLEEP)
        net.wake.wait_state("awakebox", H.AWAKE)
        cases = {
            "probe": who_has(client, PHANTOM_IP, psrc="0.0.0.0"),
            "gratuitous": who_has(client, PHANTOM_IP, psrc=PHANTOM_IP),
            "reply": who_has(client, PHANTOM_IP, op=2, hwdst=PHANTOM_MAC),
            "unicast_refresh": who_has(client, PHANTOM_IP, dst=PHANTOM_MAC),
            "from_host": Ether(src=PHANTOM_MAC, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=PHANTOM_MAC, psrc=PHANTOM_IP, pdst=PHANTOM_IP),
            "excluded": who_has(other, PHANTOM_IP),
            "not_allowed": who_has(stranger, PHANTOM_IP),
        }
        with capture(net.lab) as frames:
            for verdict, frame in cases.items():
                if verdict == "from_host":
                    continue
                send_frames(
                    client
                    if verdict not in ("excluded", "not_allowed")
                    else (other if verdict == "excluded" else stranger),
                    [frame],
                )
            send_frames(stranger, [cases["from_host"]])
            send_frames(client, [who_has(client, "198.18.0.200")])  # unregistered
            send_frames(client, [who_has(client, other.ipv4)])  # awake host
            wait_for(
                lambda: net.metric("hearth_wake_demands_total", host="awakebox", verdict="awake"),
                5,
                "the awake host's demand",
            )
        assert magic_frames(frames, PHANTOM_MAC) == []
        assert magic_frames(frames, other.mac) == []
        for verdict in (
            "probe",
            "gratuitous",
            "reply",
            "unicast_refresh",
            "excluded",
            "not_allowed",
        ):
            assert net.metric("hearth_wake_demands_total", host="phantom", verdict=verdict) == 1, (
                verdict
            )
        assert net.metric("hearth_wake_demands_total", host="phantom", verdict="wake") == 0
        # The frame from the host itself is no wake, but proves it alive (passive liveness).
        assert net.metric("hearth_wake_demands_total", host="phantom", verdict="from_host") == 1
        assert net.wake.state("phantom") == H.AWAKE
        net.wake.wait_state("phantom", H.ASLEEP, timeout=8)

        # A genuine demand, then 50 more within 2 s: only the retry schedule's packets.
        with capture(net.lab) as frames:
            send_frames(client, [who_has(client, PHANTOM_IP)])
            net.wake.wait_state("phantom", H.WAKING)
            send_frames(client, [who_has(client, PHANTOM_IP)] * 50, gap=0.04)
        raw = [c.time for c in magic_frames(frames, PHANTOM_MAC) if c.frame[12:14] == b"\x08\x42"]
        assert raw, "no magic packet at all"
        gaps = [b - a for a, b in itertools.pairwise(raw)]
        assert all(g > 0.4 for g in gaps), gaps  # retry interval 0.5 s
        assert len(raw) <= 2 + (raw[-1] - raw[0]) / 0.5
        wake = net.wake.wakes("phantom")[0]
        assert wake.extra_demands >= 50
        assert wake.packets_sent == 2 * len(raw) or wake.packets_sent >= 2 * len(raw)
    finally:
        net.delete("phantom")
        net.delete("awakebox")


def test_a_host_that_never_wakes_fails_then_retries_after_cooldown(net: Net) -> None:
    client = net.client
    net.create("ghost", fast_host(mac="02:00:00:00:99:02", ipv4="198.18.0.98", wake_timeout=1.5))
    try:
        net.wake.wait_state("ghost", H.ASLEEP)
        send_frames(client, [who_has(client, "198.18.0.98")])
        net.wake.wait_state("ghost", H.WAKING, timeout=2)
        net.wake.wait_state("ghost", H.WAKE_FAILED, timeout=5)
        assert net.wake.wakes("ghost")[0].outcome == H.FAILED
        assert net.metric("hearth_wake_failures_total", host="ghost") == 1
        net.wake.proc.wait_for_line(r"ghost: wake failed, not seen alive within 1.5 s")
        send_frames(client, [who_has(client, "198.18.0.98")])  # inside the 1 s cooldown
        wait_for(
            lambda: net.metric("hearth_wake_demands_total", host="ghost", verdict="cooldown"),
            5,
            "a cooldown verdict",
        )
        assert net.wake.state("ghost") == H.WAKE_FAILED
        time.sleep(1.0)  # let the cooldown end
        send_frames(client, [who_has(client, "198.18.0.98")])
        net.wake.wait_state("ghost", H.WAKING, timeout=2)
        assert len(net.wake.wakes("ghost")) == 2
    finally:
        net.delete("ghost")


def test_fuzzed_and_broken_frames_never_stop_the_sniffer(net: Net) -> None:
    client = net.client
    net.create("fuzzy", fast_host(mac="02:00:00:00:99:03", ipv4="198.18.0.97", ipv6="fd00:18::97"))
    try:
        net.wake.wait_state("fuzzy", H.ASLEEP)
        good = bytes(who_has(client, "198.18.0.97"))
        # Nonsense "from the host" (padded to Ethernet's 60 bytes) passes the kernel filter
        # (ether src) and must be decoded; truncated frames the kernel filter itself drops
        # (an out-of-bounds load rejects), which must not hurt either.
        head = b"\xff" * 6 + bytes.fromhex("020000009903")
        arp_body = bytes(who_has(client, "198.18.0.97"))[14:]
        nonsense = [
            head + b"\x08\x06" + b"\x00" * 28,  # ARP with a nonsense header
            head + b"\x08\x06" + arp_body[:6] + b"\x00\x07" + arp_body[8:],  # ARP op 7
        ]  # (the lab's bridge netfilter drops broken IP headers before they get here)
        broken = [f.ljust(60, b"\x00") for f in nonsense] + [
            head + b"\x08\x06" + arp_body[:10],  # truncated ARP
            head + b"\x81\x00\x00",  # truncated VLAN tag
        ]
        fuzzed = [
            Ether(src=client.mac, dst="ff:ff:ff:ff:ff:ff") / fuzz(ARP(pdst="198.18.0.97"))
            for _ in range(150)
        ] + [
            Ether(src=client.mac, dst="33:33:ff:00:00:97")
            / IPv6(dst="ff02::1:ff00:97")
            / fuzz(ICMPv6ND_NS(tgt="fd00:18::97"))
            for _ in range(150)
        ]
        send_frames(client, broken)
        send_frames(client, fuzzed)
        wait_for(
            lambda: net.metric("hearth_wake_malformed_frames_total", interface="eth0") >= 2,
            5,
            "malformed frames counted",
        )
        # Still listening: a genuine demand is still seen.
        before = net.metric("hearth_wake_frames_total", interface="eth0")
        send_frames(client, [good])
        wait_for(
            lambda: net.metric("hearth_wake_frames_total", interface="eth0") > before,
            5,
            "the genuine frame seen",
        )
        assert net.wake.proc.proc is not None and net.wake.proc.proc.poll() is None
        assert "frame handling failed" not in net.wake.proc.output
    finally:
        net.delete("fuzzy")


def test_bad_input_is_rejected_naming_the_field(net: Net) -> None:
    stub = net.wake.stub

    def rejected(host_id: str, host: wake_pb2.Host) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as info:
            stub.CreateHost(H.CreateHostRequest(host_id=host_id, host=host))
        return info.value.code(), info.value.details() or ""

    ok: dict[str, Any] = {"mac": "02:00:00:00:99:05", "ipv4": "198.18.0.95"}
    bad = [
        ("x", {**ok, "mac": "02:00:00:00:99"}, "host.mac"),
        ("x", {**ok, "mac": "zz:00:00:00:99:05"}, "host.mac"),
        ("x", {**ok, "ipv4": "198.18.0.300"}, "host.ipv4"),
        ("x", {**ok, "ipv6": "fd00::zz"}, "host.ipv6"),
        ("x", {**ok, "only_from": ["10.0.0.0/33"]}, "host.only_from[0]"),
        ("x", {**ok, "ignore_from": ["nonsense"]}, "host.ignore_from[0]"),
        ("x", {**ok, "secureon_password": "aa:bb:cc"}, "host.secureon_password"),
        ("", ok, "host_id"),
        ("Bad_Name", ok, "host_id"),
    ]
    for host_id, fields, field in bad:
        code, details = rejected(host_id, wake_pb2.Host(**fields))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (field, details)
        assert details.startswith(field), (field, details)
    listed = stub.ListHosts(H.ListHostsRequest()).hosts
    assert [h.name for h in listed] == []

    net.create("dup", fast_host(**ok, secureon_password="aa:bb:cc:dd:ee:ff"))
    try:
        code, details = rejected("dup", fast_host(mac="02:00:00:00:99:06", ipv4="198.18.0.94"))
        assert code == grpc.StatusCode.ALREADY_EXISTS and "hosts/dup" in details
        code, details = rejected("dup2", fast_host(mac=ok["mac"], ipv4="198.18.0.94"))
        assert code == grpc.StatusCode.ALREADY_EXISTS and details.startswith("host.mac")
        host = stub.GetHost(H.GetHostRequest(name="hosts/dup"))
        assert host.has_secureon_password and not host.secureon_password
        assert [h.name for h in stub.ListHosts(H.ListHostsRequest()).hosts] == ["hosts/dup"]
        with pytest.raises(grpc.RpcError) as info:
            stub.UpdateHost(
                H.UpdateHostRequest(
                    host=H.Host(name="hosts/dup", mac="nope"), update_mask=FieldMask(paths=["mac"])
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert stub.GetHost(H.GetHostRequest(name="hosts/dup")).mac == ok["mac"]
        with pytest.raises(grpc.RpcError) as info:
            stub.GetHost(H.GetHostRequest(name="hosts/none"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        net.delete("dup")


def test_restart_mid_wake_keeps_hosts_and_sends_no_burst(net: Net, tmp_path: Path) -> None:
    client = net.client
    net.create("sleeper", fast_host(mac="02:00:00:00:99:04", ipv4="198.18.0.96", wake_timeout=30))
    try:
        net.wake.wait_state("sleeper", H.ASLEEP)
        send_frames(client, [who_has(client, "198.18.0.96")])
        net.wake.wait_state("sleeper", H.WAKING, timeout=2)
        net.wake.stop()
        config = tmp_path / "wake.yaml"
        config.write_text(
            "hosts:\n  - name: declared\n    mac: 02:00:00:00:99:07\n    ipv4: 198.18.0.93\n"
            "    send_methods: [udp9]\n    alive_timeout: 3\n"
        )
        with capture(net.lab) as frames:
            net.wake = WakeService(net.hub, net.state_dir, args=["--config", str(config)])
            net.wake.start()
            host = net.wake.stub.GetHost(H.GetHostRequest(name="hosts/sleeper"))
            assert host.state in (H.UNKNOWN, H.ASLEEP)
            net.wake.wait_state("sleeper", H.ASLEEP, timeout=5)
        assert magic_frames(frames, "02:00:00:00:99:04") == []
        wakes = net.wake.wakes("sleeper")
        assert wakes[0].outcome == H.INTERRUPTED
        declared = net.wake.stub.GetHost(H.GetHostRequest(name="hosts/declared"))
        assert declared.origin == "config" and list(declared.send_methods) == [
            H.UDP9_SUBNET_BROADCAST
        ]
        net.wake.proc.wait_for_line("wakes interrupted by a restart")
        assert re.search(r"Watching sleeper", net.wake.proc.output)
    finally:
        net.delete("sleeper")
        net.delete("declared")


def test_manual_wake_wait_and_watch_with_secureon(net: Net) -> None:
    devbox = net.devbox
    stub = net.wake.stub
    sim = SleepSim(devbox, "--resume-delay", "0.5", "--password", "0a:0b:0c:0d")
    sim.wait_line("asleep")
    events = stub.WatchHostEvents(H.WatchHostEventsRequest())
    try:
        # Wrong password first: the devbox ignores the packets and stays asleep.
        net.create("secure", fast_host(devbox, secureon_password="01:02:03:04", wake_timeout=1))
        net.wake.wait_state("secure", H.ASLEEP)
        wake = stub.WakeHost(H.WakeHostRequest(name="hosts/secure"))
        assert wake.trigger == H.MANUAL and wake.outcome == H.IN_PROGRESS
        sim.wait_line("wrong SecureOn password")
        net.wake.wait_state("secure", H.WAKE_FAILED, timeout=5)

        updated = stub.UpdateHost(
            H.UpdateHostRequest(
                host=H.Host(name="hosts/secure", secureon_password="0a0b0c0d"),
                update_mask=FieldMask(paths=["secureon_password"]),
            )
        )
        assert updated.has_secureon_password and updated.mac == devbox.mac
        with pytest.raises(grpc.RpcError) as info:
            stub.WaitUntilAwake(
                H.WaitUntilAwakeRequest(name="hosts/secure", timeout=seconds(0.5), wake=False)
            )
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        host = stub.WaitUntilAwake(H.WaitUntilAwakeRequest(name="hosts/secure"), timeout=15)
        assert host.state == H.AWAKE
        sim.wait_line("magic packet via")

        wakes = stub.ListWakes(H.ListWakesRequest(parent="hosts/-", page_size=1))
        assert len(wakes.wakes) == 1 and wakes.next_page_token
        assert wakes.wakes[0].outcome == H.WOKE and wakes.wakes[0].trigger == H.MANUAL
        assert not wakes.wakes[0].HasField("followed_up")  # nobody to follow up a manual wake
        rest = stub.ListWakes(
            H.ListWakesRequest(parent="hosts/-", page_token=wakes.next_page_token)
        )
        assert [w.outcome for w in rest.wakes][:1] == [H.FAILED]

        # The watch stream: the current state first, then what happened, in order.
        kinds = []
        for event in events:
            if event.host.name != "hosts/secure":
                continue
            kinds.append(H.HostEvent.Kind.Name(event.kind))
            if event.kind == H.HostEvent.ALIVE:
                break
        assert kinds[0] in ("UPDATED", "CURRENT")  # created as the watch began
        assert "WAKE_SENT" in kinds and "WAKE_FAILED" in kinds
        assert kinds.index("WAKE_FAILED") < kinds.index("ALIVE")
        first = next(iter(stub.WatchHostEvents(H.WatchHostEventsRequest(name="hosts/secure"))))
        assert first.kind == H.HostEvent.CURRENT and first.host.state == H.AWAKE
    finally:
        events.cancel()
        sim.stop()
        net.delete("secure")


def test_a_wake_nobody_follows_up_is_counted_as_unconfirmed(net: Net) -> None:
    devbox, stranger = net.devbox, net.stranger
    sim = SleepSim(devbox, "--resume-delay", "0.3")
    sim.wait_line("asleep")
    try:
        net.create("scanned", fast_host(devbox))
        net.wake.wait_state("scanned", H.ASLEEP)
        # One who-has, as from a router's ARP scan; nothing follows it.
        send_frames(stranger, [who_has(stranger, devbox.ipv4)])
        net.wake.wait_state("scanned", H.AWAKE, timeout=5)
        wait_for(
            lambda: net.wake.wakes("scanned")[0].HasField("followed_up"), 8, "the follow-up window"
        )
        wake = net.wake.wakes("scanned")[0]
        assert wake.followed_up is False and wake.requester_mac == stranger.mac
        assert net.metric("hearth_wake_unconfirmed_total", host="scanned") == 1
        net.wake.proc.wait_for_line(r"nobody followed up on waking scanned")
    finally:
        sim.stop()
        net.delete("scanned")


def test_demo_part_builds_a_devbox_a_laptop_can_wake(tmp_path: Path) -> None:
    from hearth_demo.house import House, _service_env
    from hearth_testing import ServiceProcess
    from hearth_wake import demo

    with Lab(prefix="twd") as lab:
        hub = lab.add_host("hearth")
        house = House(lab=lab, hub=hub, hub_address=hub.expose())
        demo.prepare(house)
        service = ServiceProcess(
            "wake", env=_service_env(house, "wake"), prefix=["ip", "netns", "exec", hub.netns]
        ).start(timeout=30)
        try:
            demo.populate(house)
            assert "ping" in house.notes[0] and lab.hosts["laptop"].netns in house.notes[0]
            laptop, devbox = lab.hosts["laptop"], lab.hosts["devbox"]
            service.wait_for_line(r"devbox asleep", timeout=15)
            assert "bytes from" in ping_until_reply(laptop, devbox.ipv4)
            service.wait_for_line(r"devbox seen alive after")
        finally:
            service.stop()


def test_losing_the_watched_interface_degrades_health_until_it_returns(net: Net) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    assert net.wake.channel is not None
    health = health_pb2_grpc.HealthStub(net.wake.channel)

    def status() -> int:
        return health.Check(health_pb2.HealthCheckRequest(service="")).status

    net.hub.run(["ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1"], check=True)
    net.hub.run(["ip", "addr", "add", "192.0.2.1/24", "dev", "dum0"], check=True)
    net.hub.run(["ip", "link", "set", "dum0", "up"], check=True)
    net.create("far", fast_host(mac="02:00:00:00:99:08", ipv4="192.0.2.9"))
    try:
        assert net.wake.stub.GetHost(H.GetHostRequest(name="hosts/far")).effective_interface == (
            "dum0"
        )
        assert status() == health_pb2.HealthCheckResponse.SERVING
        net.hub.run(["ip", "link", "del", "dum0"], check=True)
        wait_for(lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING, 10, "degraded")
        net.wake.proc.wait_for_line(r"cannot watch interface .*interface=dum0")
        net.hub.run(
            ["ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1"], check=True
        )
        net.hub.run(["ip", "link", "set", "dum0", "up"], check=True)
        wait_for(lambda: status() == health_pb2.HealthCheckResponse.SERVING, 10, "recovered")
        # Probing the vanished interface's host stopped nothing else.
        assert "crashed" not in net.wake.proc.output and "tick failed" not in net.wake.proc.output
    finally:
        net.delete("far")
        net.hub.run(["ip", "link", "del", "dum0"])


def test_every_send_method_reaches_the_machine(net: Net) -> None:
    other = net.other
    sim = SleepSim(other, "--start", "awake")
    sim.wait_line("awake")
    methods = [
        H.ETHERTYPE_0842,
        H.UDP9_SUBNET_BROADCAST,
        H.UDP7_SUBNET_BROADCAST,
        H.UDP9_LIMITED_BROADCAST,
        H.UDP9_UNICAST,
    ]
    try:
        net.create("allways", fast_host(other, send_methods=methods))
        net.wake.wait_state("allways", H.AWAKE)
        wake = net.wake.stub.WakeHost(H.WakeHostRequest(name="hosts/allways"))
        assert wake.outcome == H.ALREADY_AWAKE and wake.packets_sent == 5
        assert list(wake.methods) == ["0x0842", "udp9", "udp7", "udp9-limited", "udp9-unicast"]

        def received() -> list[str]:
            return [line.split()[3] for line in sim.lines if line.startswith("magic packet")]

        wait_for(lambda: len(received()) == 5, 5, "five magic packets at the machine")
        assert sorted(received()) == ["0x0842", "udp7", "udp9", "udp9", "udp9"]
        assert all(net.wake.hub.mac in line for line in sim.lines if "magic" in line)
    finally:
        sim.stop()
        net.delete("allways")
