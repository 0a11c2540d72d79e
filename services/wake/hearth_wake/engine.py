"""The wake state machine: liveness, demand classification, wakes with retries.

One :class:`Engine` holds every host's state behind one lock. The sniffer thread calls
:meth:`Engine.on_frame` and, for a genuine demand, the magic packet leaves from that same
thread before anything else happens (the reaction path). The asyncio side calls
:meth:`Engine.tick` a few times a second for retries, timeouts and probes, and receives
:class:`Event` objects through ``notify`` (called outside the lock).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum

from hearth_wake import metrics
from hearth_wake.addr import BROADCAST_MAC, mac_text
from hearth_wake.frames import Frame, Kind
from hearth_wake.hosts import HostSpec
from hearth_wake.sender import Sender

# How often a host is probed while a wake is in progress or its state is unknown.
WAKING_PROBE_INTERVAL = 0.25
UNKNOWN_PROBE_INTERVAL = 0.5
# Every "next time" the engine computes moves forward by at least this much, whatever the
# settings hold (defence in depth: settings are validated, but a 1 ns retry interval once
# made the retry catch-up loop spin forever, as epoch + 1e-9 == epoch in floating point).
MIN_STEP = 0.05
MAX_STEP = 7 * 86400.0


def step(seconds: float) -> float:
    """``seconds`` as a schedule step: finite, between MIN_STEP and MAX_STEP."""
    if math.isnan(seconds) or seconds < MIN_STEP:
        return MIN_STEP
    return min(seconds, MAX_STEP)


class State(Enum):
    UNKNOWN = 1
    AWAKE = 2
    ASLEEP = 3
    WAKING = 4
    WAKE_FAILED = 5


class Verdict(StrEnum):
    """What a frame aimed at a host led to (the demands metric's ``verdict`` label)."""

    WAKE = "wake"
    IN_PROGRESS = "in_progress"
    PROBE = "probe"
    GRATUITOUS = "gratuitous"
    REPLY = "reply"
    UNICAST_REFRESH = "unicast_refresh"
    FROM_HOST = "from_host"
    FROM_SELF = "from_self"
    EXCLUDED = "excluded"
    NOT_ALLOWED = "not_allowed"
    AWAKE = "awake"
    COOLDOWN = "cooldown"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class EngineSettings:
    probe_interval: float = 30.0
    """Longest time between probes of a host (shorter if its alive timeout is short)."""
    unknown_timeout: float = 5.0
    """At start, a host not answering probes for this long is ASLEEP."""
    wake_grace: float = 30.0
    """After a wake, the host is not declared asleep for at least this long."""
    followup_window: float = 60.0
    """Time after a wake within which the requester should talk to the host."""
    icmp: bool = True
    """Also send ICMP echo requests in probe rounds (ARP probes are always sent)."""


@dataclass
class WakeRecord:
    id: int
    host: str
    trigger: str  # "arp", "ns" or "manual"
    requester_mac: str = ""
    requester_ip: str = ""
    demand_time: float = 0.0
    first_packet_time: float = 0.0
    alive_time: float | None = None
    outcome: str = "in_progress"  # woke, failed, interrupted, already_awake
    packets_sent: int = 0
    extra_demands: int = 0
    followed_up: bool | None = None
    methods: list[str] = field(default_factory=list)
    # Scheduling (not persisted).
    next_retry: float = 0.0
    deadline: float = 0.0
    followup_deadline: float = 0.0

    @property
    def reaction(self) -> float:
        return max(0.0, self.first_packet_time - self.demand_time)

    @property
    def resume(self) -> float | None:
        if self.alive_time is None:
            return None
        return max(0.0, self.alive_time - self.first_packet_time)


@dataclass
class HostStatus:
    spec: HostSpec
    state: State = State.UNKNOWN
    since: float = 0.0
    last_seen: float | None = None
    wake: WakeRecord | None = None
    """The wake in progress, or the last one while its follow-up is undecided."""
    cooldown_until: float = 0.0
    grace_until: float = 0.0
    unknown_until: float = 0.0
    next_probe: float = 0.0


@dataclass(frozen=True)
class Event:
    """Something a Watch stream, the log and the wake history want to know about."""

    kind: str  # demand, wake_sent, retry, alive, asleep, wake_failed, followup, probe
    host: str
    time: float
    message: str
    status: HostStatus
    wake: WakeRecord | None = None
    verdict: str = ""


class Engine:
    def __init__(
        self,
        sender: Sender,
        settings: EngineSettings,
        notify: Callable[[Event], None],
        *,
        clock: Callable[[], float] = time.time,
        first_wake_id: int = 1,
    ) -> None:
        self.sender = sender
        self.settings = settings
        self.notify = notify
        self.clock = clock
        self._lock = threading.Lock()
        self._hosts: dict[str, HostStatus] = {}
        self._by_ipv4: dict[str, HostStatus] = {}
        self._by_ipv6: dict[str, HostStatus] = {}
        self._by_mac: dict[bytes, HostStatus] = {}
        self._next_wake_id = first_wake_id

    # ------------------------------------------------------------------ hosts
    def set_host(self, spec: HostSpec) -> None:
        """Add a host (state UNKNOWN until probed) or change an existing one's settings."""
        now = self.clock()
        with self._lock:
            status = self._hosts.get(spec.id)
            if status is None or (status.spec.mac, status.spec.ipv4) != (spec.mac, spec.ipv4):
                status = HostStatus(spec=spec, since=now)
                status.unknown_until = now + min(self.settings.unknown_timeout, spec.alive_timeout)
                self._hosts[spec.id] = status
            else:
                status.spec = spec
            self._reindex()
        metrics.HOST_UP.labels(spec.id).set(1 if status.state is State.AWAKE else 0)

    def remove_host(self, host_id: str) -> None:
        with self._lock:
            self._hosts.pop(host_id, None)
            self._reindex()
        metrics.forget_host(host_id)

    def _reindex(self) -> None:
        hosts = self._hosts.values()
        self._by_ipv4 = {h.spec.ipv4: h for h in hosts}
        self._by_ipv6 = {h.spec.ipv6: h for h in hosts if h.spec.ipv6}
        self._by_mac = {h.spec.mac_raw: h for h in hosts}

    def specs(self) -> list[HostSpec]:
        with self._lock:
            return [h.spec for h in self._hosts.values()]

    def status(self, host_id: str) -> HostStatus | None:
        with self._lock:
            status = self._hosts.get(host_id)
            return _copy(status) if status else None

    def statuses(self) -> list[HostStatus]:
        with self._lock:
            return [_copy(h) for h in self._hosts.values()]

    # ------------------------------------------------------------ sniffer side
    def on_frame(self, frame: Frame, ts: float, own_mac: bytes) -> None:
        """Handle one captured frame (``ts``: its capture time). Never raises on content."""
        events: list[Event] = []
        with self._lock:
            # Only a frame from the host's own MAC means alive. Its IP address from another
            # MAC (a sleep proxy's or proxy ARP's reply, someone's gratuitous ARP claiming it)
            # is said *for* a sleeping host and must neither end a wake nor stop one.
            source = self._by_mac.get(frame.src_mac)
            if source is not None:
                self._seen(source, ts, events)
            target = self._lookup(frame.target_ip)
            if target is not None:
                self._check_followup(target, frame, ts, events)
                if frame.kind in (Kind.ARP_REQUEST, Kind.ARP_REPLY, Kind.NEIGHBOR_SOLICIT):
                    self._demand(target, frame, ts, own_mac, events)
        for event in events:
            self.notify(event)

    def _lookup(self, ip: str) -> HostStatus | None:
        if not ip:
            return None
        return self._by_ipv4.get(ip) or self._by_ipv6.get(ip)

    def _classify(self, h: HostStatus, frame: Frame, own_mac: bytes, now: float) -> Verdict:
        if frame.src_mac == h.spec.mac_raw:
            return Verdict.FROM_HOST
        if frame.src_mac == own_mac:
            return Verdict.FROM_SELF
        if frame.kind is Kind.ARP_REPLY:
            return Verdict.REPLY
        if frame.sender_ip in ("0.0.0.0", "::"):
            return Verdict.PROBE
        if frame.sender_ip == frame.target_ip:
            return Verdict.GRATUITOUS
        if frame.kind is Kind.ARP_REQUEST and frame.dst_mac != BROADCAST_MAC:
            return Verdict.UNICAST_REFRESH
        if frame.kind is Kind.NEIGHBOR_SOLICIT and not frame.dst_mac.startswith(b"\x33\x33"):
            return Verdict.UNICAST_REFRESH
        requester = mac_text(frame.src_mac)
        if h.spec.excluded.matches(requester, frame.sender_ip):
            return Verdict.EXCLUDED
        if h.spec.allowed and not h.spec.allowed.matches(requester, frame.sender_ip):
            return Verdict.NOT_ALLOWED
        if h.state is State.AWAKE:
            return Verdict.AWAKE
        if h.state is State.WAKING:
            return Verdict.IN_PROGRESS
        if h.state is State.UNKNOWN:
            return Verdict.UNKNOWN
        if h.state is State.WAKE_FAILED and now < h.cooldown_until:
            return Verdict.COOLDOWN
        return Verdict.WAKE

    def _demand(
        self, h: HostStatus, frame: Frame, ts: float, own_mac: bytes, events: list[Event]
    ) -> None:
        verdict = self._classify(h, frame, own_mac, ts)
        if verdict is Verdict.WAKE:
            trigger = "ns" if frame.kind is Kind.NEIGHBOR_SOLICIT else "arp"
            self._start_wake(h, trigger, mac_text(frame.src_mac), frame.sender_ip, ts, events)
        elif verdict is Verdict.IN_PROGRESS and h.wake is not None:
            h.wake.extra_demands += 1
        metrics.DEMANDS.labels(h.spec.id, verdict.value).inc()
        what = "NS" if frame.kind is Kind.NEIGHBOR_SOLICIT else "ARP"
        op = "is-at" if frame.kind is Kind.ARP_REPLY else "who-has"
        decided = f"demand for {h.spec.id}" if verdict is Verdict.WAKE else verdict.value
        message = f"{what} {mac_text(frame.src_mac)} -> {op} {frame.target_ip}: {decided}" + (
            f" ({h.spec.id})" if verdict is not Verdict.WAKE else ""
        )
        # The demand is reported before the wake it caused.
        at = len(events) - 1 if verdict is Verdict.WAKE else len(events)
        # Only a demand that belongs to the running wake carries (and re-saves) it.
        wake = h.wake if verdict in (Verdict.WAKE, Verdict.IN_PROGRESS) else None
        events.insert(at, self._event("demand", h, ts, message, wake=wake, verdict=verdict.value))

    def _check_followup(self, h: HostStatus, frame: Frame, ts: float, events: list[Event]) -> None:
        wake = h.wake
        if (
            wake is None
            or wake.followed_up is not None
            or wake.alive_time is None
            or not wake.requester_mac
            or ts < wake.alive_time
            or mac_text(frame.src_mac) != wake.requester_mac
        ):
            return
        wake.followed_up = True
        message = f"{wake.requester_mac} followed up on waking {h.spec.id}"
        events.append(self._event("followup", h, ts, message, wake=wake))

    # ------------------------------------------------------------------ wakes
    def wake(self, host_id: str) -> WakeRecord | None:
        """Manual wake (like ``etherwake``): None if the host is unknown."""
        events: list[Event] = []
        with self._lock:
            h = self._hosts.get(host_id)
            if h is None:
                return None
            if h.state is State.WAKING and h.wake is not None:
                return replace(h.wake)
            now = self.clock()
            if h.state is State.AWAKE:
                wake = self._new_wake(h, "manual", "", "", now)
                self._send(h, wake)
                wake.outcome = "already_awake"
                message = f"Waking {h.spec.id} ({', '.join(wake.methods)}): already awake"
                events.append(self._event("wake_sent", h, now, message, wake=wake))
            else:
                wake = self._start_wake(h, "manual", "", "", now, events)
        for event in events:
            self.notify(event)
        return replace(wake)

    def _new_wake(self, h: HostStatus, trigger: str, mac: str, ip: str, ts: float) -> WakeRecord:
        wake = WakeRecord(self._next_wake_id, h.spec.id, trigger, mac, ip, demand_time=ts)
        self._next_wake_id += 1
        return wake

    def _send(self, h: HostStatus, wake: WakeRecord) -> list[str]:
        spec = h.spec
        sent = self.sender.send_magic(
            spec.effective_interface, spec.mac_raw, spec.ipv4, spec.methods, spec.password
        )
        if not wake.first_packet_time:
            wake.first_packet_time = self.clock()
            wake.methods = sent
        wake.packets_sent += len(sent)
        for label in sent:
            metrics.PACKETS.labels(spec.id, label).inc()
        return sent

    def _start_wake(
        self, h: HostStatus, trigger: str, mac: str, ip: str, ts: float, events: list[Event]
    ) -> WakeRecord:
        wake = self._new_wake(h, trigger, mac, ip, ts)
        self._send(h, wake)  # first: this is the reaction path
        sent_at = wake.first_packet_time
        metrics.REACTION.labels(h.spec.id).observe(wake.reaction)
        wake.next_retry = sent_at + step(h.spec.retry_interval)
        wake.deadline = sent_at + h.spec.wake_timeout
        h.wake = wake
        h.next_probe = sent_at + WAKING_PROBE_INTERVAL
        self._set_state(h, State.WAKING, sent_at)
        methods = ", ".join(wake.methods) or "nothing could be sent"
        events.append(self._event("wake_sent", h, sent_at, f"Waking {h.spec.id} ({methods})", wake))
        return wake

    # ---------------------------------------------------------------- liveness
    def _seen(self, h: HostStatus, ts: float, events: list[Event]) -> None:
        previous = h.last_seen
        if previous is None or ts > previous:
            h.last_seen = ts
            metrics.LAST_SEEN.labels(h.spec.id).set(ts)
        if h.state is State.AWAKE:
            return
        if h.state is State.WAKING and h.wake is not None:
            wake = h.wake
            wake.alive_time = max(ts, wake.first_packet_time)
            wake.outcome = "woke"
            wake.followup_deadline = wake.alive_time + self.settings.followup_window
            resume = wake.resume or 0.0
            metrics.RESUME.labels(h.spec.id).observe(resume)
            h.grace_until = ts + self.settings.wake_grace
            message = f"{h.spec.id} seen alive after {resume:.1f} s"
        else:
            ago = f"{ts - h.since:.0f} s" if h.state is not State.UNKNOWN else "start"
            message = f"{h.spec.id} seen alive (was {h.state.name.lower()} since {ago})"
            if h.state is State.UNKNOWN:
                message = f"{h.spec.id} seen alive"
        self._set_state(h, State.AWAKE, ts)
        events.append(self._event("alive", h, ts, message, wake=h.wake))

    def _set_state(self, h: HostStatus, state: State, now: float) -> None:
        if h.state is not state:
            h.state = state
            h.since = now
        metrics.HOST_UP.labels(h.spec.id).set(1 if state is State.AWAKE else 0)

    def _probe_every(self, h: HostStatus) -> float:
        return step(min(self.settings.probe_interval, h.spec.alive_timeout / 3))

    def tick(self) -> None:
        """Retries, wake timeouts, probes, asleep detection, follow-up deadlines."""
        events: list[Event] = []
        with self._lock:
            now = self.clock()
            for h in self._hosts.values():
                self._tick_host(h, now, events)
        for event in events:
            self.notify(event)

    def _tick_host(self, h: HostStatus, now: float, events: list[Event]) -> None:
        spec = h.spec
        wake = h.wake
        self._clamp(h, now)
        if wake is not None and wake.alive_time is not None and wake.followed_up is None:
            if not wake.requester_mac:
                wake.followed_up = None
            elif now >= wake.followup_deadline:
                wake.followed_up = False
                metrics.UNCONFIRMED.labels(spec.id).inc()
                message = (
                    f"nobody followed up on waking {spec.id}: {wake.requester_mac} did not "
                    f"talk to it within {self.settings.followup_window:g} s (false wake?)"
                )
                events.append(self._event("followup", h, now, message, wake=wake))
        if h.state is State.WAKING and wake is not None:
            if now >= wake.deadline:
                wake.outcome = "failed"
                h.cooldown_until = now + spec.cooldown
                h.next_probe = now + self._probe_every(h)
                self._set_state(h, State.WAKE_FAILED, now)
                metrics.FAILURES.labels(spec.id).inc()
                message = f"{spec.id}: wake failed, not seen alive within {spec.wake_timeout:g} s"
                events.append(self._event("wake_failed", h, now, message, wake=wake))
                return
            if now >= wake.next_retry:
                sent = self._send(h, wake)
                # The next slot of the retry schedule after now, in O(1): retries missed
                # while the loop was busy are skipped, not sent in a burst.
                interval = step(spec.retry_interval)
                missed = math.floor((now - wake.next_retry) / interval) + 1
                wake.next_retry += max(1, missed) * interval
                if wake.next_retry <= now:  # float rounding at epoch magnitudes
                    wake.next_retry = now + interval
                message = f"Waking {spec.id} again ({', '.join(sent)}), {wake.packets_sent} sent"
                events.append(self._event("retry", h, now, message, wake=wake))
            if now >= h.next_probe:
                self.sender.arp_probe(spec.effective_interface, spec.mac_raw, spec.ipv4)
                h.next_probe = now + WAKING_PROBE_INTERVAL
            return
        if h.state is State.UNKNOWN:
            if now >= h.unknown_until:
                self._set_state(h, State.ASLEEP, now)
                h.next_probe = now + self._probe_every(h)
                message = f"{spec.id} asleep (no answer to probes since start)"
                events.append(self._event("asleep", h, now, message))
            elif now >= h.next_probe:
                self._probe(h)
                h.next_probe = now + UNKNOWN_PROBE_INTERVAL
                message = f"Pinging {spec.id}: Alive: unknown (not seen since start)"
                events.append(self._event("probe", h, now, message))
            return
        age = now - h.last_seen if h.last_seen is not None else None
        if h.state is State.AWAKE and age is not None:
            if age > spec.alive_timeout and now >= h.grace_until:
                self._set_state(h, State.ASLEEP, now)
                message = f"{spec.id} asleep (not seen for {age:.0f} s)"
                events.append(self._event("asleep", h, now, message))
                h.next_probe = now
            elif age < self._probe_every(h):
                return
        if now >= h.next_probe:
            self._probe(h)
            h.next_probe = now + self._probe_every(h)
            alive = h.state is State.AWAKE
            seen = f"{age:.0f} s ago" if age is not None else "never seen"
            message = f"Pinging {spec.id}: Alive: {alive} ({seen})"
            events.append(self._event("probe", h, now, message))

    def _clamp(self, h: HostStatus, now: float) -> None:
        """No scheduled time lies further ahead than its own step: the clock is the wall
        clock (the times are shown), and one stepped back (NTP, a bad RTC) must not stall
        retries, wake timeouts or probes until it catches up again."""
        spec = h.spec
        h.next_probe = min(h.next_probe, now + self._probe_every(h))
        h.cooldown_until = min(h.cooldown_until, now + step(spec.cooldown))
        h.unknown_until = min(h.unknown_until, now + step(self.settings.unknown_timeout))
        h.grace_until = min(h.grace_until, now + step(self.settings.wake_grace))
        wake = h.wake
        if wake is not None and h.state is State.WAKING:
            wake.next_retry = min(wake.next_retry, now + step(spec.retry_interval))
            wake.deadline = min(wake.deadline, now + step(spec.wake_timeout))

    def _probe(self, h: HostStatus) -> None:
        spec = h.spec
        self.sender.arp_probe(spec.effective_interface, spec.mac_raw, spec.ipv4)
        if self.settings.icmp:
            self.sender.icmp_echo(spec.effective_interface, spec.ipv4)

    def _event(
        self,
        kind: str,
        h: HostStatus,
        ts: float,
        message: str,
        wake: WakeRecord | None = None,
        verdict: str = "",
    ) -> Event:
        return Event(
            kind, h.spec.id, ts, message, _copy(h), replace(wake) if wake else None, verdict
        )


def _copy(status: HostStatus) -> HostStatus:
    return replace(status, wake=replace(status.wake) if status.wake else None)


def interfaces_of(specs: Iterable[HostSpec]) -> dict[str, list[HostSpec]]:
    """Hosts grouped by the interface they are watched on."""
    out: dict[str, list[HostSpec]] = {}
    for spec in specs:
        out.setdefault(spec.effective_interface, []).append(spec)
    return out
