"""The engine's decisions with a fake clock and a sender that records instead of sending.

The real sockets are covered by the lab tests; here every verdict, the retry schedule, the
wake timeout, the cooldown, the grace window and the follow-up window are checked quickly
and without root.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hypothesis_st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether

from hearth_wake import frames
from hearth_wake.engine import Engine, EngineSettings, Event, State
from hearth_wake.hosts import HostSpec
from hearth_wake.sender import Method, Sender

HOST_MAC, HOST_IP, HOST_IP6 = "02:00:00:00:00:09", "198.18.0.9", "fd00::9"
CLIENT_MAC, CLIENT_IP = "02:00:00:00:00:05", "198.18.0.5"
OWN_MAC = bytes.fromhex("020000000001")
PROXY_MAC = "02:00:00:00:00:42"  # a sleep proxy / proxy ARP router answering for the host


class RecordingSender(Sender):
    def __init__(self) -> None:
        super().__init__()
        self.magic: list[float] = []
        self.probes = 0
        self.clock: Clock | None = None

    def send_magic(
        self, ifname: str, mac: bytes, ipv4: str, methods: Sequence[Method], password: bytes = b""
    ) -> list[str]:
        assert self.clock is not None
        self.magic.append(self.clock.now)
        return [m.label for m in methods]

    def arp_probe(self, ifname: str, mac: bytes, ipv4: str) -> None:
        self.probes += 1

    def icmp_echo(self, ifname: str, ipv4: str) -> None:
        self.probes += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, **host: object) -> None:
        self.clock = Clock()
        self.sender = RecordingSender()
        self.sender.clock = self.clock
        self.events: list[Event] = []
        settings = EngineSettings(
            probe_interval=10, unknown_timeout=2, wake_grace=5, followup_window=10
        )
        self.engine = Engine(self.sender, settings, self.events.append, clock=self.clock)
        fields: dict[str, object] = {
            "alive_timeout": 30,
            "wake_timeout": 10,
            "retry_interval": 2,
            "cooldown": 5,
            **host,
        }
        spec = HostSpec(
            id="devbox",
            mac=HOST_MAC,
            ipv4=HOST_IP,
            ipv6=HOST_IP6,
            interface="eth9",
            **fields,  # type: ignore[arg-type]
        )
        self.engine.set_host(spec)

    def advance(self, seconds: float, step: float = 0.1) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now = round(self.clock.now + step, 6)
            self.engine.tick()

    def frame(self, pkt: object) -> None:
        decoded = frames.decode(bytes(pkt))  # type: ignore[call-overload]
        assert decoded is not None
        self.engine.on_frame(decoded, self.clock.now, OWN_MAC)

    def state(self) -> State:
        status = self.engine.status("devbox")
        assert status is not None
        return status.state

    def verdicts(self) -> list[str]:
        return [e.verdict for e in self.events if e.kind == "demand"]

    def asleep(self) -> Rig:
        self.advance(2.5)
        assert self.state() is State.ASLEEP
        return self


def who_has(src_mac: str = CLIENT_MAC, psrc: str = CLIENT_IP, **kw: object) -> object:
    dst = kw.pop("dst", "ff:ff:ff:ff:ff:ff")
    return Ether(src=src_mac, dst=dst) / ARP(
        op=kw.pop("op", 1), hwsrc=src_mac, psrc=psrc, pdst=kw.pop("pdst", HOST_IP)
    )


@pytest.mark.parametrize(
    ("frame", "verdict"),
    [
        (who_has(psrc="0.0.0.0"), "probe"),
        (who_has(psrc=HOST_IP), "gratuitous"),
        (who_has(op=2), "reply"),
        (who_has(dst=HOST_MAC), "unicast_refresh"),
        (who_has(src_mac=HOST_MAC, psrc="0.0.0.0"), "from_host"),
        (who_has(src_mac=OWN_MAC.hex(":"), psrc="198.18.0.1"), "from_self"),
        (who_has(src_mac="02:00:00:00:00:66", psrc="198.18.0.66"), "excluded"),
        (who_has(src_mac="02:00:00:00:00:77", psrc="10.9.9.9"), "not_allowed"),
    ],
)
def test_frames_that_are_no_demand_send_nothing(frame: object, verdict: str) -> None:
    rig = Rig(only_from=("198.18.0.0/24",), ignore_from=("02:00:00:00:00:66",)).asleep()
    rig.frame(frame)
    assert rig.verdicts() == [verdict]
    assert rig.sender.magic == []


def test_a_demand_wakes_once_then_retries_on_schedule_until_failed_and_cooldown() -> None:
    rig = Rig().asleep()
    rig.frame(who_has())
    assert rig.state() is State.WAKING and len(rig.sender.magic) == 1
    first = rig.sender.magic[0]
    for _ in range(20):  # a storm of demands during the wake: counted, not sent
        rig.frame(who_has())
        rig.advance(0.1)
    status = rig.engine.status("devbox")
    assert status is not None and status.wake is not None
    assert status.wake.extra_demands == 20
    assert [round(t - first, 1) for t in rig.sender.magic] == [0.0, 2.0]
    rig.advance(8.1)
    assert rig.state() is State.WAKE_FAILED
    assert [round(t - first, 1) for t in rig.sender.magic] == [0.0, 2.0, 4.0, 6.0, 8.0]
    rig.frame(who_has())
    assert rig.verdicts()[-1] == "cooldown" and len(rig.sender.magic) == 5
    rig.advance(5.1)
    rig.frame(who_has())
    assert rig.verdicts()[-1] == "wake" and rig.state() is State.WAKING


def test_alive_after_a_wake_records_resume_and_follow_up() -> None:
    rig = Rig().asleep()
    rig.frame(who_has())
    rig.advance(3.0)
    rig.frame(Ether(src=HOST_MAC, dst=OWN_MAC.hex(":")) / ARP(op=2, psrc=HOST_IP))
    assert rig.state() is State.AWAKE
    status = rig.engine.status("devbox")
    assert status is not None and status.wake is not None
    assert status.wake.outcome == "woke" and status.wake.resume == pytest.approx(3.0, abs=0.2)
    rig.frame(who_has(dst=HOST_MAC))  # the requester talks to the host afterwards
    assert [e.kind for e in rig.events][-2:] == ["followup", "demand"]
    status = rig.engine.status("devbox")
    assert status is not None and status.wake is not None and status.wake.followed_up is True


def test_nobody_following_up_is_a_false_wake() -> None:
    rig = Rig().asleep()
    rig.frame(who_has())
    rig.frame(Ether(src=HOST_MAC) / ARP(op=2, psrc=HOST_IP))
    rig.advance(10.2)
    status = rig.engine.status("devbox")
    assert status is not None and status.wake is not None and status.wake.followed_up is False


def test_grace_window_and_asleep_detection() -> None:
    rig = Rig(alive_timeout=1.0).asleep()
    rig.frame(who_has())
    rig.frame(Ether(src=HOST_MAC) / ARP(op=2, psrc=HOST_IP))
    rig.advance(3.0)  # not seen for 3 s > alive timeout, but within the 5 s grace
    assert rig.state() is State.AWAKE
    rig.advance(2.5)
    assert rig.state() is State.ASLEEP
    probes = rig.sender.probes
    rig.advance(2.0)
    assert rig.sender.probes > probes  # an asleep host keeps being probed


def test_neighbour_solicitation_for_the_ipv6_address_wakes() -> None:
    rig = Rig().asleep()
    rig.frame(
        Ether(src=CLIENT_MAC, dst="33:33:ff:00:00:09")
        / IPv6(src="fd00::5", dst="ff02::1:ff00:9")
        / ICMPv6ND_NS(tgt=HOST_IP6)
    )
    assert rig.verdicts() == ["wake"] and len(rig.sender.magic) == 1
    status = rig.engine.status("devbox")
    assert status is not None and status.wake is not None and status.wake.trigger == "ns"


def test_unknown_state_after_start_sends_nothing() -> None:
    rig = Rig()
    rig.frame(who_has())
    assert rig.verdicts() == ["unknown"] and rig.sender.magic == []


# Frames that carry the host's address but come from another MAC: said *for* a sleeping
# host (a sleep proxy, proxy ARP, an address conflict), never proof that it is awake.
CLAIMS_FROM_ANOTHER_MAC = {
    "gratuitous request": Ether(src=PROXY_MAC, dst="ff:ff:ff:ff:ff:ff")
    / ARP(op=1, hwsrc=PROXY_MAC, psrc=HOST_IP, pdst=HOST_IP),
    "gratuitous reply": Ether(src=PROXY_MAC, dst="ff:ff:ff:ff:ff:ff")
    / ARP(op=2, hwsrc=PROXY_MAC, psrc=HOST_IP, pdst=HOST_IP, hwdst="ff:ff:ff:ff:ff:ff"),
    "proxy ARP reply": Ether(src=PROXY_MAC, dst=CLIENT_MAC)
    / ARP(op=2, hwsrc=PROXY_MAC, psrc=HOST_IP, hwdst=CLIENT_MAC, pdst=CLIENT_IP),
    "proxy asking as the host": Ether(src=PROXY_MAC, dst="ff:ff:ff:ff:ff:ff")
    / ARP(op=1, hwsrc=PROXY_MAC, psrc=HOST_IP, pdst=CLIENT_IP),
    "IPv4 from the host's address": Ether(src=PROXY_MAC, dst=CLIENT_MAC)
    / IP(src=HOST_IP, dst=CLIENT_IP)
    / UDP(sport=5353, dport=5353),
    "neighbour advertisement": Ether(src=PROXY_MAC, dst="33:33:00:00:00:01")
    / IPv6(src=HOST_IP6, dst="ff02::1")
    / ICMPv6ND_NA(tgt=HOST_IP6, R=0, S=0, O=1),
}


@pytest.mark.parametrize("claim", CLAIMS_FROM_ANOTHER_MAC)
def test_the_hosts_address_from_another_mac_leaves_an_asleep_host_asleep(claim: str) -> None:
    rig = Rig().asleep()
    for _ in range(3):
        rig.frame(CLAIMS_FROM_ANOTHER_MAC[claim])
        rig.advance(1.0)
    status = rig.engine.status("devbox")
    assert status is not None
    assert (status.state, status.last_seen) == (State.ASLEEP, None)
    assert [e.kind for e in rig.events if e.kind == "alive"] == []
    assert rig.sender.magic == []
    # A demand still wakes it: it was never taken for awake.
    rig.frame(who_has())
    assert rig.verdicts()[-1] == "wake" and rig.state() is State.WAKING


def test_a_sleep_proxy_answering_during_a_wake_does_not_stop_the_retries() -> None:
    rig = Rig().asleep()
    rig.frame(who_has())
    first = rig.sender.magic[0]
    for _ in range(9):  # the proxy keeps answering for the host, every second
        for frame in CLAIMS_FROM_ANOTHER_MAC.values():
            rig.frame(frame)
        assert rig.state() is State.WAKING
        rig.advance(1.0)
    rig.advance(1.1)
    assert [round(t - first, 1) for t in rig.sender.magic] == [0.0, 2.0, 4.0, 6.0, 8.0]
    status = rig.engine.status("devbox")
    assert status is not None and status.wake is not None
    assert (status.state, status.wake.outcome, status.wake.alive_time) == (
        State.WAKE_FAILED,
        "failed",
        None,
    )


def test_any_frame_from_the_hosts_own_mac_proves_it_awake() -> None:
    rig = Rig().asleep()
    rig.frame(who_has())
    rig.advance(1.0)
    # Not even an address of its own yet (as while DHCP runs after a resume).
    rig.frame(Ether(src=HOST_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="0.0.0.0", pdst=HOST_IP))
    status = rig.engine.status("devbox")
    assert status is not None and status.wake is not None
    assert (status.state, status.wake.outcome) == (State.AWAKE, "woke")
    assert status.last_seen == rig.clock.now


@pytest.mark.timeout(20)
@pytest.mark.parametrize("interval", [1e-9, 0.0, -5.0, float("nan")])
def test_the_retry_schedule_moves_forward_whatever_the_interval(interval: float) -> None:
    # Issue 11: a stored 1 ns retry interval made `next_retry += interval` at an epoch-sized
    # clock a no-op, and the catch-up loop spun forever on the event loop. Settings are now
    # validated; the engine must make progress with a bad value all the same.
    rig = Rig(retry_interval=interval, wake_timeout=7200)
    rig.clock.now = 1.7e9
    rig.asleep()
    rig.frame(who_has())
    assert rig.state() is State.WAKING
    rig.clock.now += 3600  # the loop was stalled for an hour: no burst, one retry
    rig.engine.tick()
    assert len(rig.sender.magic) == 2
    rig.advance(1.0)
    # At most one send per MIN_STEP (0.05 s) of clock, ticks 0.1 s apart: one per tick.
    assert 2 < len(rig.sender.magic) <= 2 + 10


def _arp_base() -> bytes:
    return bytes(who_has())  # type: ignore[call-overload]


def _ns_base() -> bytes:
    return bytes(
        Ether(src=CLIENT_MAC, dst="33:33:ff:00:00:09")
        / IPv6(src="fd00::5", dst="ff02::1:ff00:9")
        / ICMPv6ND_NS(tgt=HOST_IP6)
    )


_BASES = {
    "arp": _arp_base(),
    "ns": _ns_base(),
    "ip": bytes(Ether(src=CLIENT_MAC) / IP(src=CLIENT_IP, dst=HOST_IP) / UDP()),
    "host": bytes(who_has(src_mac=HOST_MAC, psrc=HOST_IP, pdst=CLIENT_IP)),  # type: ignore[call-overload]
}


def _mutated(data: hypothesis_st.DataObject) -> bytes:
    """A frame: random bytes, or a valid ARP/NS/IP frame truncated, bit-flipped, extended."""
    kind = data.draw(hypothesis_st.sampled_from(["garbage", "arp", "ns", "ip", "host"]))
    if kind == "garbage":
        return data.draw(hypothesis_st.binary(max_size=200))
    base = _BASES[kind]
    frame = bytearray(base)
    for _ in range(data.draw(hypothesis_st.integers(0, 6))):
        at = data.draw(hypothesis_st.integers(0, len(frame) - 1))
        frame[at] = data.draw(hypothesis_st.integers(0, 255))
    cut = data.draw(hypothesis_st.integers(0, len(frame)))
    tail = data.draw(hypothesis_st.binary(max_size=40))
    return bytes(frame[:cut]) + tail


@settings(max_examples=200, deadline=None)
@given(hypothesis_st.data())
def test_generated_frames_never_raise_and_state_stays_bounded(
    data: hypothesis_st.DataObject,
) -> None:
    rig = Rig()
    rig.asleep()
    count = data.draw(hypothesis_st.integers(1, 40))
    for _ in range(count):
        raw = _mutated(data)
        decoded = frames.decode(raw)  # never raises: None when malformed
        if decoded is not None:
            rig.engine.on_frame(decoded, rig.clock.now, OWN_MAC)
        if data.draw(hypothesis_st.booleans()):
            rig.clock.now += data.draw(hypothesis_st.floats(0, 5))
            rig.engine.tick()
    # Bounded: still one host, one wake at most, and no more wake records than demands
    # that found it asleep (at most one per state change to WAKING).
    statuses = rig.engine.statuses()
    assert [s.spec.id for s in statuses] == ["devbox"]
    wakes = {e.wake.id for e in rig.events if e.wake is not None}
    assert len(wakes) <= len([e for e in rig.events if e.kind == "wake_sent"])
    assert len(rig.sender.magic) <= 1 + count + len([e for e in rig.events if e.kind == "retry"])


def test_a_clock_stepped_back_does_not_stall_retries_or_the_wake_timeout() -> None:
    rig = Rig(retry_interval=1, wake_timeout=10).asleep()
    rig.frame(who_has())
    rig.clock.now -= 3600  # NTP steps the wall clock back an hour mid-wake
    rig.advance(3.05)
    assert 3 <= len(rig.sender.magic) <= 5  # the first packet and a retry a second
    rig.advance(10.5)
    assert rig.state() is State.WAKE_FAILED
