"""Proto views of the wake service's hosts, wakes and events (what the API answers)."""

from __future__ import annotations

from hearth.wake.v1 import wake_pb2
from hearth_runtime.timeconv import duration_from_seconds, timestamp_from_epoch
from hearth_wake.engine import HostStatus, Verdict, WakeRecord
from hearth_wake.hosts import HostSpec
from hearth_wake.sender import Method

OUTCOMES = {
    "in_progress": wake_pb2.WAKE_OUTCOME_IN_PROGRESS,
    "woke": wake_pb2.WAKE_OUTCOME_WOKE,
    "failed": wake_pb2.WAKE_OUTCOME_FAILED,
    "interrupted": wake_pb2.WAKE_OUTCOME_INTERRUPTED,
    "already_awake": wake_pb2.WAKE_OUTCOME_ALREADY_AWAKE,
}
TRIGGERS = {
    "arp": wake_pb2.WAKE_TRIGGER_ARP,
    "ns": wake_pb2.WAKE_TRIGGER_NEIGHBOR_SOLICITATION,
    "manual": wake_pb2.WAKE_TRIGGER_MANUAL,
}
# Verdict "wake" -> DEMAND_VERDICT_WAKE, ... (the metric label keeps the lower-case word).
VERDICTS = {v.value: wake_pb2.DemandVerdict.Value(f"DEMAND_VERDICT_{v.name}") for v in Verdict}
# A stored wake keeps the labels of its methods ("udp9", "0x0842", ...).
METHODS = {m.label: m.value for m in Method}
EVENT_KINDS = {
    "demand": wake_pb2.HostEvent.KIND_DEMAND,
    "wake_sent": wake_pb2.HostEvent.KIND_WAKE_SENT,
    "retry": wake_pb2.HostEvent.KIND_WAKE_SENT,
    "alive": wake_pb2.HostEvent.KIND_ALIVE,
    "asleep": wake_pb2.HostEvent.KIND_ASLEEP,
    "wake_failed": wake_pb2.HostEvent.KIND_WAKE_FAILED,
}


def host_proto(spec: HostSpec, status: HostStatus | None) -> wake_pb2.Host:
    msg = spec.to_proto()
    if status is not None:
        msg.state = status.state.value  # type: ignore[assignment]
        msg.state_since.CopyFrom(timestamp_from_epoch(status.since))
        if status.last_seen is not None:
            msg.last_seen.CopyFrom(timestamp_from_epoch(status.last_seen))
    return msg


def wake_proto(wake: WakeRecord) -> wake_pb2.Wake:
    msg = wake_pb2.Wake(
        name=f"hosts/{wake.host}/wakes/{wake.id}",
        host=f"hosts/{wake.host}",
        trigger=TRIGGERS.get(wake.trigger, wake_pb2.WAKE_TRIGGER_UNSPECIFIED),
        requester_mac=wake.requester_mac,
        requester_ip=wake.requester_ip,
        outcome=OUTCOMES.get(wake.outcome, wake_pb2.WAKE_OUTCOME_UNSPECIFIED),
        packets_sent=wake.packets_sent,
        extra_demands=wake.extra_demands,
        methods=[METHODS[m] for m in wake.methods if m in METHODS],  # type: ignore[misc]
    )
    msg.demand_time.CopyFrom(timestamp_from_epoch(wake.demand_time))
    if wake.first_packet_time:
        msg.first_packet_time.CopyFrom(timestamp_from_epoch(wake.first_packet_time))
        msg.reaction.CopyFrom(duration_from_seconds(wake.reaction))
    if wake.alive_time is not None:
        msg.alive_time.CopyFrom(timestamp_from_epoch(wake.alive_time))
        msg.resume.CopyFrom(duration_from_seconds(wake.resume or 0.0))
    if wake.followed_up is not None:
        msg.followed_up = wake.followed_up
    return msg
