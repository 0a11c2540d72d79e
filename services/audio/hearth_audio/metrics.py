"""Prometheus metrics of the audio service (labels: stream and zone ids)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge

RTP_PACKETS = Counter(
    "hearth_audio_rtp_packets", "RTP packets received from a stream's group.", ["stream"]
)
RTP_LOST = Counter(
    "hearth_audio_rtp_lost_packets", "RTP packets missing from a stream (RFC 3550).", ["stream"]
)
RTP_JITTER = Gauge(
    "hearth_audio_rtp_jitter_seconds", "RFC 3550 interarrival jitter of a stream.", ["stream"]
)
RTP_AGE = Gauge(
    "hearth_audio_rtp_last_packet_age_seconds", "Time since a stream's last packet.", ["stream"]
)
STREAM_UP = Gauge("hearth_audio_stream_up", "1 while a stream's packets arrive.", ["stream"])
ZONE_UP = Gauge("hearth_audio_zone_up", "1 while a zone's PulseAudio is reachable.", ["zone"])
ZONE_SUBSCRIBED = Gauge(
    "hearth_audio_zone_subscribed", "1 for the stream a zone is patched to.", ["zone", "stream"]
)
ZONE_LATENCY = Gauge(
    "hearth_audio_zone_latency_seconds",
    "PulseAudio's latency of the zone's RTP sink-input.",
    ["zone"],
)
ZONE_STALLED = Gauge(
    "hearth_audio_zone_stalled", "1 while a zone's stream is live but the zone is silent.", ["zone"]
)
SYNC_OFFSET = Gauge(
    "hearth_audio_sync_offset_seconds",
    "Last measured output offset of zone_b behind zone_a.",
    ["zone_a", "zone_b"],
)
RECONCILE_ACTIONS = Counter(
    "hearth_audio_reconcile_actions",
    "Changes made to a PulseAudio to converge it (load/unload/set ...).",
    ["target", "action"],
)
DATAGRAMS_REJECTED = Counter(
    "hearth_audio_datagrams_rejected",
    "Datagrams on a stream's group (RTP or SAP) refused by the parsers, by reason.",
    ["stream", "reason"],
)
TABLE_EVICTIONS = Counter(
    "hearth_audio_table_evictions",
    "Entries dropped from a full per-stream table (foreign, senders, announcers).",
    ["table"],
)
HEALTH_ERRORS = Counter(
    "hearth_audio_health_errors",
    "Health refreshes of a stream that failed (the other streams' went on).",
    ["stream"],
)
PLAYER_UP = Gauge("hearth_audio_player_up", "1 while MPD is reachable.")
STATION_UP = Gauge("hearth_audio_station_up", "1 while the station's PulseAudio is reachable.")


def forget_stream(sid: str) -> None:
    from hearth_audio.rtp import REASONS

    for metric in (RTP_PACKETS, RTP_LOST, RTP_JITTER, RTP_AGE, STREAM_UP, HEALTH_ERRORS):
        with contextlib.suppress(KeyError):
            metric.remove(sid)
    for reason in REASONS:
        with contextlib.suppress(KeyError):
            DATAGRAMS_REJECTED.remove(sid, reason)


def forget_zone(zid: str) -> None:
    for metric in (ZONE_UP, ZONE_LATENCY, ZONE_STALLED):
        with contextlib.suppress(KeyError):
            metric.remove(zid)
