"""The wake service against real frames between network namespaces (needs root).

One lab per module: ``hub`` runs hearth-wake, ``devbox`` runs the sleep simulator,
``client``, ``other`` and ``stranger`` ask for things. Each test registers its own hosts.
"""

from __future__ import annotations

import itertools
import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import fuzz

from hearth.wake.v1 import wake_pb2
from hearth_lab import Lab, lab_available
from hearth_testing import metric_value, scrape, wait_for
from hearth_wake.labtools import (
    SleepSim,
    WakeService,
    capture,
    fast_host,
    magic_frames,
    ping_until_reply,
    seconds,
    send_frames,
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
        # Lab hosts do not forward (hearth_lab turns it off): a forwarding client would pass
        # on a probe misdirected to it with a who-has of its own, a demand nobody made.
        assert all(h.sysctl("net.ipv4.ip_forward") == "0" for h in lab.hosts.values())
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
        net.wake.wait_state("devbox", H.HOST_STATE_ASLEEP)
        started = time.time()
        ping = client.run(["ping", "-c", "2", "-w", "20", devbox.ipv4], timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        sim.wait_line("magic packet via")
        sim.wait_line("awake")
        host = net.wake.wait_state("devbox", H.HOST_STATE_AWAKE)
        assert host.last_seen.ToNanoseconds() / 1e9 >= started

        wake = net.wake.wakes("devbox")[0]
        assert wake.trigger == H.WAKE_TRIGGER_ARP and wake.outcome == H.WAKE_OUTCOME_WOKE
        assert (wake.requester_mac, wake.requester_ip) == (client.mac, client.ipv4)
        assert wake.packets_sent >= 2 and set(wake.methods) == {
            H.SEND_METHOD_UDP9_SUBNET_BROADCAST,
            H.SEND_METHOD_ETHERTYPE_0842,
        }
        # The durations are the differences of the recorded times (their size is the
        # benchmark's business); the resume includes the simulator's 1 s resume delay.
        demand, first, alive = (
            t.ToNanoseconds() for t in (wake.demand_time, wake.first_packet_time, wake.alive_time)
        )
        assert started * 1e9 <= demand <= first <= alive
        assert abs(wake.reaction.ToNanoseconds() - (first - demand)) < 1000
        assert abs(wake.resume.ToNanoseconds() - (alive - first)) < 1000
        assert wake.resume.ToNanoseconds() >= 0.9e9, wake.resume
        # The client's pings after the wake were seen (hub mode): a wake someone wanted.
        wait_for("the follow-up", lambda: net.wake.wakes("devbox")[0].HasField("followed_up"))
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
        net.wake.wait_state("devbox", H.HOST_STATE_ASLEEP, timeout=10)
        log.wait_for_line(r"devbox asleep \(not seen for \d+ s\)")
        log.wait_for_line(r"Pinging devbox: Alive: False \(\d+ s ago\)", timeout=3)
        # As after a long sleep: the client's neighbour entry for the devbox has expired.
        client.run(["ip", "neigh", "flush", "dev", "eth0"], check=True)
        ping = client.run(["ping", "-c", "1", "-w", "20", devbox.ipv4], timeout=30)
        assert ping.returncode == 0, ping.stdout + log.output
        net.wake.wait_state("devbox", H.HOST_STATE_AWAKE)
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
        net.wake.wait_state("devbox6", H.HOST_STATE_ASLEEP)
        ping = client.run(["ping", "-6", "-c", "1", "-w", "20", devbox.ipv6], timeout=30)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        net.wake.wait_state("devbox6", H.HOST_STATE_AWAKE)
        wake = net.wake.wakes("devbox6")[0]
        assert (
            wake.trigger == H.WAKE_TRIGGER_NEIGHBOR_SOLICITATION
            and wake.outcome == H.WAKE_OUTCOME_WOKE
        )
        assert wake.requester_ip == client.ipv6
        net.wake.proc.wait_for_line(rf"NS {client.mac} -> who-has {devbox.ipv6}: demand")
    finally:
        sim.stop()
        net.delete("devbox6")


PHANTOM_MAC, PHANTOM_IP = "02:00:00:00:99:01", "198.18.0.99"


NOT_DEMANDS = ("probe", "gratuitous", "reply", "unicast_refresh", "excluded", "not_allowed")


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
        net.wake.wait_state("phantom", H.HOST_STATE_ASLEEP)
        net.wake.wait_state("awakebox", H.HOST_STATE_AWAKE)
        cases = {
            "probe": (client, who_has(client, PHANTOM_IP, psrc="0.0.0.0")),
            "gratuitous": (client, who_has(client, PHANTOM_IP, psrc=PHANTOM_IP)),
            "reply": (client, who_has(client, PHANTOM_IP, op=2, hwdst=PHANTOM_MAC)),
            "unicast_refresh": (client, who_has(client, PHANTOM_IP, dst=PHANTOM_MAC)),
            "excluded": (other, who_has(other, PHANTOM_IP)),
            "not_allowed": (stranger, who_has(stranger, PHANTOM_IP)),
        }

        def counted() -> bool:
            return all(
                net.metric("hearth_wake_demands_total", host="phantom", verdict=verdict) == 1
                for verdict in NOT_DEMANDS
            ) and bool(net.metric("hearth_wake_demands_total", host="awakebox", verdict="awake"))

        with capture(net.lab) as frames:
            for sender, frame in cases.values():
                send_frames(sender, [frame])
            send_frames(client, [who_has(client, "198.18.0.200")])  # unregistered
            send_frames(client, [who_has(client, other.ipv4)])  # awake host
            wait_for("every frame's verdict", counted, timeout=5)
        assert magic_frames(frames) == [], net.wake.proc.output  # for no MAC at all
        assert net.metric("hearth_wake_demands_total", host="phantom", verdict="wake") == 0
        # The gratuitous ARP claimed the phantom's address from the client's MAC: that is no
        # sign of life, the phantom is still asleep.
        assert net.wake.state("phantom") == H.HOST_STATE_ASLEEP

        # A frame from the host's own MAC is no wake, but proves it alive (passive liveness).
        send_frames(
            stranger,
            [
                Ether(src=PHANTOM_MAC, dst="ff:ff:ff:ff:ff:ff")
                / ARP(op=1, hwsrc=PHANTOM_MAC, psrc=PHANTOM_IP, pdst=PHANTOM_IP)
            ],
        )
        wait_for(
            "the frame from the host itself",
            lambda: net.metric("hearth_wake_demands_total", host="phantom", verdict="from_host"),
            timeout=5,
        )
        assert net.wake.state("phantom") == H.HOST_STATE_AWAKE
        net.wake.wait_state("phantom", H.HOST_STATE_ASLEEP, timeout=8)

        # A genuine demand, then 50 more within 2 s: only the retry schedule's packets.
        with capture(net.lab) as frames:
            send_frames(client, [who_has(client, PHANTOM_IP)])
            net.wake.wait_state("phantom", H.HOST_STATE_WAKING)
            send_frames(client, [who_has(client, PHANTOM_IP)] * 50, gap=0.04)
        raw = [c.time for c in magic_frames(frames, PHANTOM_MAC) if c.frame[12:14] == b"\x08\x42"]
        assert raw, "no magic packet at all"
        gaps = [b - a for a, b in itertools.pairwise(raw)]
        assert all(g > 0.4 for g in gaps), gaps  # retry interval 0.5 s
        assert len(raw) <= 2 + (raw[-1] - raw[0]) / 0.5
        wake = net.wake.wakes("phantom")[0]
        assert wake.extra_demands >= 50
        assert wake.packets_sent >= 2 * len(raw)  # retries go on after the capture ended
    finally:
        net.delete("phantom")
        net.delete("awakebox")


PROXIED_MAC, PROXIED_IP = "02:00:00:00:99:09", "198.18.0.92"


def test_a_sleep_proxy_answering_for_the_host_neither_wakes_it_nor_stops_a_wake(net: Net) -> None:
    """`other` plays a sleep proxy (or a router doing proxy ARP): it answers for the
    sleeping host's address with its own MAC. That is no sign of life."""
    client, proxy = net.client, net.other
    net.create("proxied", fast_host(mac=PROXIED_MAC, ipv4=PROXIED_IP, wake_timeout=4))
    claims = [
        Ether(src=proxy.mac, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=proxy.mac, psrc=PROXIED_IP, pdst=PROXIED_IP),
        Ether(src=proxy.mac, dst=client.mac)
        / ARP(op=2, hwsrc=proxy.mac, psrc=PROXIED_IP, hwdst=client.mac, pdst=client.ipv4),
        # An echo reply in the host's name (nothing the client's kernel would answer).
        Ether(src=proxy.mac, dst=client.mac) / IP(src=PROXIED_IP, dst=client.ipv4) / ICMP(type=0),
    ]
    _hub_mode(net.lab, on=True)  # so that the watcher sees the proxy's unicast answers too
    try:
        net.wake.wait_state("proxied", H.HOST_STATE_ASLEEP)
        before = net.metric("hearth_wake_frames_total", interface="eth0")
        send_frames(proxy, claims)
        wait_for(
            "the proxy's frames",
            lambda: net.metric("hearth_wake_frames_total", interface="eth0") >= before + 3,
            timeout=5,
        )
        host = net.wake.stub.GetHost(H.GetHostRequest(name="hosts/proxied"))
        assert host.state == H.HOST_STATE_ASLEEP and not host.HasField("last_seen")

        # During a wake the proxy keeps answering: the wake goes on retrying until it fails.
        bpf = f"ether proto 0x0842 or (ether src {proxy.mac} and (arp or icmp))"
        with capture(net.lab, bpf) as frames:
            send_frames(client, [who_has(client, PROXIED_IP)])
            net.wake.wait_state("proxied", H.HOST_STATE_WAKING)
            send_frames(proxy, claims * 4, gap=0.1)
            net.wake.wait_state("proxied", H.HOST_STATE_WAKE_FAILED, timeout=10)
        wake = net.wake.wakes("proxied")[0]
        assert wake.outcome == H.WAKE_OUTCOME_FAILED and not wake.HasField("alive_time")
        last_claim = max(
            c.time for c in frames if c.frame[6:12] == bytes.fromhex(proxy.mac.replace(":", ""))
        )
        retries = [c.time for c in magic_frames(frames, PROXIED_MAC) if c.time > last_claim]
        assert retries, "no magic packet after the proxy's last answer"
        assert net.metric("hearth_wake_resume_seconds_count", host="proxied") == 0
    finally:
        _hub_mode(net.lab, on=False)
        net.delete("proxied")


def test_a_host_that_never_wakes_fails_then_retries_after_cooldown(net: Net) -> None:
    client = net.client
    net.create("ghost", fast_host(mac="02:00:00:00:99:02", ipv4="198.18.0.98", wake_timeout=1.5))
    try:
        net.wake.wait_state("ghost", H.HOST_STATE_ASLEEP)
        send_frames(client, [who_has(client, "198.18.0.98")])
        net.wake.wait_state("ghost", H.HOST_STATE_WAKING, timeout=2)
        net.wake.wait_state("ghost", H.HOST_STATE_WAKE_FAILED, timeout=5)
        assert net.wake.wakes("ghost")[0].outcome == H.WAKE_OUTCOME_FAILED
        assert net.metric("hearth_wake_failures_total", host="ghost") == 1
        net.wake.proc.wait_for_line(r"ghost: wake failed, not seen alive within 1.5 s")
        send_frames(client, [who_has(client, "198.18.0.98")])  # inside the 1 s cooldown
        wait_for(
            "a cooldown verdict",
            lambda: net.metric("hearth_wake_demands_total", host="ghost", verdict="cooldown"),
            timeout=5,
        )
        assert net.wake.state("ghost") == H.HOST_STATE_WAKE_FAILED
        assert len(net.wake.wakes("ghost")) == 1

        def demand_wakes() -> bool:  # asks again and again, as a client would
            send_frames(client, [who_has(client, "198.18.0.98")])
            return len(net.wake.wakes("ghost")) == 2

        wait_for("a demand after the cooldown to wake again", demand_wakes, timeout=10)
        assert net.wake.wakes("ghost")[0].trigger == H.WAKE_TRIGGER_ARP
    finally:
        net.delete("ghost")


def test_fuzzed_and_broken_frames_never_stop_the_sniffer(net: Net) -> None:
    client = net.client
    net.create("fuzzy", fast_host(mac="02:00:00:00:99:03", ipv4="198.18.0.97", ipv6="fd00:18::97"))
    try:
        net.wake.wait_state("fuzzy", H.HOST_STATE_ASLEEP)
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
        # Byte-level mutations of genuine ARP and NS demands (fixed seed: reproducible).
        rng = random.Random(11)
        bases = [good, bytes(fuzzed[-1])]
        mutated = []
        for i in range(200):
            frame = bytearray(bases[i % 2])
            for _ in range(rng.randint(1, 6)):
                frame[rng.randrange(14, len(frame))] = rng.randrange(256)
            mutated.append(bytes(frame[: rng.randint(14, len(frame))]).ljust(60, b"\x00"))
        malformed = net.metric("hearth_wake_malformed_frames_total", interface="eth0")
        send_frames(client, broken)
        send_frames(client, fuzzed)
        send_frames(client, mutated)
        wait_for(
            "the two nonsense ARP frames counted as malformed",
            lambda: (
                net.metric("hearth_wake_malformed_frames_total", interface="eth0") >= malformed + 2
            ),
            timeout=5,
        )
        # Still listening: a genuine demand is still seen.
        before = net.metric("hearth_wake_frames_total", interface="eth0")
        send_frames(client, [good])
        wait_for(
            "the genuine frame seen",
            lambda: net.metric("hearth_wake_frames_total", interface="eth0") > before,
            timeout=5,
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
        net.wake.wait_state("sleeper", H.HOST_STATE_ASLEEP)
        send_frames(client, [who_has(client, "198.18.0.96")])
        net.wake.wait_state("sleeper", H.HOST_STATE_WAKING, timeout=2)
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
            assert host.state in (H.HOST_STATE_UNKNOWN, H.HOST_STATE_ASLEEP)
            net.wake.wait_state("sleeper", H.HOST_STATE_ASLEEP, timeout=5)
        assert magic_frames(frames, "02:00:00:00:99:04") == []
        wakes = net.wake.wakes("sleeper")
        assert wakes[0].outcome == H.WAKE_OUTCOME_INTERRUPTED
        declared = net.wake.stub.GetHost(H.GetHostRequest(name="hosts/declared"))
        assert declared.origin == H.HOST_ORIGIN_CONFIG and list(declared.send_methods) == [
            H.SEND_METHOD_UDP9_SUBNET_BROADCAST
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
        net.wake.wait_state("secure", H.HOST_STATE_ASLEEP)
        wake = stub.WakeHost(H.WakeHostRequest(name="hosts/secure"))
        assert wake.trigger == H.WAKE_TRIGGER_MANUAL and wake.outcome == H.WAKE_OUTCOME_IN_PROGRESS
        sim.wait_line("wrong SecureOn password")
        net.wake.wait_state("secure", H.HOST_STATE_WAKE_FAILED, timeout=5)
        # A script waiting for it (defaults: wake it, wait past the wake timeout) learns
        # that the wake failed: UNAVAILABLE, not a deadline of its own.
        mark = len(sim.lines)
        with pytest.raises(grpc.RpcError) as info:
            stub.WaitUntilAwake(H.WaitUntilAwakeRequest(name="hosts/secure"), timeout=15)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
        assert "secure did not wake" in (info.value.details() or "")
        sim.wait_line("wrong SecureOn password", after=mark)
        assert net.wake.state("secure") == H.HOST_STATE_WAKE_FAILED

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
        assert host.state == H.HOST_STATE_AWAKE
        sim.wait_line("magic packet via")

        wakes = stub.ListWakes(H.ListWakesRequest(parent="hosts/-", page_size=1))
        assert len(wakes.wakes) == 1 and wakes.next_page_token
        assert (
            wakes.wakes[0].outcome == H.WAKE_OUTCOME_WOKE
            and wakes.wakes[0].trigger == H.WAKE_TRIGGER_MANUAL
        )
        assert not wakes.wakes[0].HasField("followed_up")  # nobody to follow up a manual wake
        rest = stub.ListWakes(
            H.ListWakesRequest(parent="hosts/-", page_token=wakes.next_page_token)
        )
        assert [w.outcome for w in rest.wakes] == [H.WAKE_OUTCOME_FAILED, H.WAKE_OUTCOME_FAILED]

        # The watch stream: the current state first, then what happened, in order.
        kinds = []
        for event in events:
            if event.host.name != "hosts/secure":
                continue
            kinds.append(H.HostEvent.Kind.Name(event.kind))
            if event.kind == H.HostEvent.KIND_ALIVE:
                break
        assert kinds[0] in ("KIND_UPDATED", "KIND_CURRENT")  # created as the watch began
        assert "KIND_WAKE_SENT" in kinds and "KIND_WAKE_FAILED" in kinds
        assert kinds.index("KIND_WAKE_FAILED") < kinds.index("KIND_ALIVE")
        first = next(iter(stub.WatchHostEvents(H.WatchHostEventsRequest(name="hosts/secure"))))
        assert first.kind == H.HostEvent.KIND_CURRENT and first.host.state == H.HOST_STATE_AWAKE
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
        net.wake.wait_state("scanned", H.HOST_STATE_ASLEEP)
        # One who-has, as from a router's ARP scan; nothing follows it.
        send_frames(stranger, [who_has(stranger, devbox.ipv4)])
        net.wake.wait_state("scanned", H.HOST_STATE_AWAKE, timeout=5)
        wait_for(
            "the follow-up window",
            lambda: net.wake.wakes("scanned")[0].HasField("followed_up"),
            timeout=8,
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
        # The capture threads run under the runtime's supervisor (their task family has
        # its restart counter).
        samples = scrape(net.wake.metrics)
        assert metric_value(samples, "hearth_task_restarts_total", task="wake-sniffer") == 0
        net.hub.run(["ip", "link", "del", "dum0"], check=True)
        wait_for(
            "degraded", lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=10
        )
        net.wake.proc.wait_for_line(r"cannot watch interface .*interface=dum0")
        net.hub.run(
            ["ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum1"], check=True
        )
        net.hub.run(["ip", "link", "set", "dum0", "up"], check=True)
        wait_for(
            "recovered", lambda: status() == health_pb2.HealthCheckResponse.SERVING, timeout=10
        )
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
        H.SEND_METHOD_ETHERTYPE_0842,
        H.SEND_METHOD_UDP9_SUBNET_BROADCAST,
        H.SEND_METHOD_UDP7_SUBNET_BROADCAST,
        H.SEND_METHOD_UDP9_LIMITED_BROADCAST,
        H.SEND_METHOD_UDP9_UNICAST,
    ]
    try:
        net.create("allways", fast_host(other, send_methods=methods))
        net.wake.wait_state("allways", H.HOST_STATE_AWAKE)
        wake = net.wake.stub.WakeHost(H.WakeHostRequest(name="hosts/allways"))
        assert wake.outcome == H.WAKE_OUTCOME_ALREADY_AWAKE and wake.packets_sent == 5
        assert list(wake.methods) == methods  # in the order asked for

        def received() -> list[str]:
            return [line.split()[3] for line in sim.lines if line.startswith("magic packet")]

        wait_for("five magic packets at the machine", lambda: len(received()) == 5, timeout=5)
        assert sorted(received()) == ["0x0842", "udp7", "udp9", "udp9", "udp9"]
        assert all(net.wake.hub.mac in line for line in sim.lines if "magic" in line)
    finally:
        sim.stop()
        net.delete("allways")


def test_the_kernel_filter_leaves_unrelated_traffic_out(net: Net) -> None:
    """With the bridge flooding like a hub, the watcher's interface receives everything on
    the LAN; only frames about a registered host may get past the kernel filter."""
    client, other = net.client, net.other
    net.create("filtered", fast_host(mac="02:00:00:00:99:0a", ipv4="198.18.0.91"))
    unrelated = [
        who_has(client, "198.18.0.201"),  # who-has for an unregistered address
        who_has(client, client.ipv4, psrc=client.ipv4),  # someone else's gratuitous ARP
        who_has(client, other.ipv4, op=2, dst=other.mac, hwdst=other.mac),  # a reply
        Ether(src=client.mac, dst=other.mac) / IP(src=client.ipv4, dst=other.ipv4) / UDP(),
        Ether(src=client.mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src=client.ipv4, dst="255.255.255.255")
        / UDP(dport=5678),
        Ether(src=client.mac, dst=other.mac) / IPv6(src=client.ipv6, dst=other.ipv6) / UDP(),
        Ether(src=client.mac, dst="33:33:ff:00:00:77")
        / IPv6(src=client.ipv6, dst="ff02::1:ff00:77")
        / ICMPv6ND_NS(tgt="fd00:18::77"),  # no registered host has an IPv6 address
    ]

    def received() -> int:
        path = "/sys/class/net/eth0/statistics/rx_packets"
        return int(net.hub.run(["cat", path], check=True).stdout)

    _hub_mode(net.lab, on=True)
    try:
        net.wake.wait_state("filtered", H.HOST_STATE_ASLEEP)
        frames_before, received_before = (
            net.metric("hearth_wake_frames_total", interface="eth0"),
            received(),
        )
        send_frames(client, unrelated * 20)
        # Then one frame about the host (a probe: no wake), sent after the others.
        send_frames(client, [who_has(client, "198.18.0.91", psrc="0.0.0.0")])
        wait_for(
            "the probe's verdict",
            lambda: net.metric("hearth_wake_demands_total", host="filtered", verdict="probe"),
            timeout=5,
        )
        assert received() >= received_before + len(unrelated) * 20  # they did arrive
        assert net.metric("hearth_wake_frames_total", interface="eth0") == frames_before + 1
    finally:
        _hub_mode(net.lab, on=False)
        net.delete("filtered")


def test_arp_probes_find_a_host_that_drops_icmp(net: Net) -> None:
    client, mute, hub = net.client, net.stranger, net.hub
    mute.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    try:
        ping = client.run(["ping", "-c", "1", "-W", "1", mute.ipv4], timeout=10)
        assert ping.returncode != 0, ping.stdout  # it really ignores pings
        bpf = f"(ether src {mute.mac} and (arp or icmp)) or (ether src {hub.mac} and icmp)"
        with capture(net.lab, bpf) as frames:
            net.create("mute", fast_host(mute))  # alive timeout 3 s, probed every second
            first = net.wake.wait_state("mute", H.HOST_STATE_AWAKE)
            since = first.state_since.ToNanoseconds()

            def seen_long_after() -> bool:
                host = net.wake.stub.GetHost(H.GetHostRequest(name="hosts/mute"))
                assert (
                    host.state == H.HOST_STATE_AWAKE and host.state_since.ToNanoseconds() == since
                )
                return host.last_seen.ToNanoseconds() > since + 4e9  # past the alive timeout

            wait_for("the mute host seen again and again", seen_long_after, timeout=15)
        arp_replies = [c for c in frames if c.frame[12:14] == b"\x08\x06" and c.frame[21] == 2]
        icmp = [c.frame for c in frames if c.frame[12:14] == b"\x08\x00" and c.frame[23] == 1]
        echo_requests = [f for f in icmp if f[6:12] == _mac(hub.mac) and f[34] == 8]
        assert len(arp_replies) >= 3 and all(c.frame[0:6] == _mac(hub.mac) for c in arp_replies)
        assert echo_requests, "the watcher did not ping at all"
        assert [f for f in icmp if f[6:12] == _mac(mute.mac)] == []  # never answered
    finally:
        mute.sysctl("net.ipv4.icmp_echo_ignore_all", "0")
        net.delete("mute")


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))
