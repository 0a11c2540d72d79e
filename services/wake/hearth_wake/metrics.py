"""Prometheus metrics of the wake service (label ``host`` is the host id)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

REACTION = Histogram(
    "hearth_wake_reaction_seconds",
    "Demand frame captured -> first magic packet sent.",
    ("host",),
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.05, 0.25, 1.0),
)
RESUME = Histogram(
    "hearth_wake_resume_seconds",
    "First magic packet sent -> host seen alive.",
    ("host",),
    buckets=(0.5, 1, 2, 3, 5, 8, 10, 15, 20, 30, 45, 60, 90, 120),
)
DEMANDS = Counter(
    "hearth_wake_demands_total",
    "ARP requests / neighbour solicitations aimed at a host, by what was decided.",
    ("host", "verdict"),
)
PACKETS = Counter("hearth_wake_packets_sent_total", "Magic packets sent.", ("host", "method"))
FAILURES = Counter(
    "hearth_wake_failures_total", "Wakes that ended without the host seen alive.", ("host",)
)
UNCONFIRMED = Counter(
    "hearth_wake_unconfirmed_total",
    "Wakes whose requester did not talk to the host within the follow-up window (false wakes).",
    ("host",),
)
HOST_UP = Gauge("hearth_wake_host_up", "1 while the host is seen alive.", ("host",))
LAST_SEEN = Gauge(
    "hearth_wake_host_last_seen_timestamp_seconds",
    "When a frame from the host was last seen (Unix time).",
    ("host",),
)
FRAMES = Counter(
    "hearth_wake_frames_total",
    "Frames that passed the kernel filter, by interface (unrelated traffic never gets here).",
    ("interface",),
)
MALFORMED = Counter(
    "hearth_wake_malformed_frames_total", "Frames that could not be decoded.", ("interface",)
)

QUARANTINED = Gauge(
    "hearth_wake_hosts_quarantined",
    "Stored or declared hosts that failed validation: not watched until fixed or deleted.",
)


def forget_host(host: str) -> None:
    """Remove a deleted host's series."""
    for metric in (REACTION, RESUME, FAILURES, UNCONFIRMED, HOST_UP, LAST_SEEN):
        with contextlib.suppress(KeyError):
            metric.remove(host)
    for metric in (DEMANDS, PACKETS):
        for labels in [k for k in metric._metrics if k[0] == host]:
            metric.remove(*labels)
