#!/usr/bin/env python3
"""Write hearth's Grafana dashboards (grafana/dashboards/*.json) from the panels below.

The JSON files are committed (Grafana provisions them as they are); this script is their
source. ``--check`` fails when a committed file differs from what it would write.

Every panel's query must return data from a running hearth: the compose test runs each
``expr`` of each dashboard against the lab stack's Prometheus (``$__rate_interval`` read as
one minute). Failure counters that only exist once something failed are written as
``failures or <the same series> * 0`` so that the panel shows 0 instead of "No data".
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "hearth-prometheus"}


@dataclass
class Panel:
    title: str
    exprs: list[tuple[str, str]]  # (expr, legend)
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    width: int = 12


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel] = field(default_factory=list)


RATE = "$__rate_interval"


def _quantiles(metric: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le, {by}" if by else "le"
    legend = f"{{{{{by}}}}} " if by else ""
    return [
        (f"histogram_quantile({q}, sum by ({group}) ({metric}_bucket))", f"{legend}p{name}")
        for q, name in (("0.5", "50"), ("0.99", "99"))
    ]


DASHBOARDS = [
    Dashboard(
        uid="hearth-wake",
        title="hearth / Wake",
        description="Sleeping machines woken on demand: state, reaction and resume times.",
        panels=[
            Panel("Hosts awake", [("sum(hearth_wake_host_up)", "awake")], kind="stat", width=6),
            Panel(
                "Wakes since start",
                [("sum(hearth_wake_resume_seconds_count)", "wakes")],
                kind="stat",
                width=6,
            ),
            Panel("Host awake (1) or not (0)", [("hearth_wake_host_up", "{{host}}")]),
            Panel(
                "Reaction: demand frame -> first magic packet (since start)",
                _quantiles("hearth_wake_reaction_seconds"),
                unit="s",
            ),
            Panel(
                "Resume: first magic packet -> host seen alive (since start)",
                _quantiles("hearth_wake_resume_seconds"),
                unit="s",
            ),
            Panel(
                "Demands by verdict",
                [("sum by (verdict) (hearth_wake_demands_total)", "{{verdict}}")],
                description="Every ARP/NS aimed at a registered host, and what wake made of it.",
            ),
            Panel(
                "Magic packets sent",
                [("sum by (host, method) (hearth_wake_packets_sent_total)", "{{host}} {{method}}")],
            ),
            Panel(
                "Failed and unconfirmed wakes",
                [
                    (
                        "sum by (host) (hearth_wake_failures_total)"
                        " or sum by (host) (hearth_wake_host_up) * 0",
                        "{{host}} failed",
                    ),
                    (
                        "sum by (host) (hearth_wake_unconfirmed_total)"
                        " or sum by (host) (hearth_wake_host_up) * 0",
                        "{{host}} nobody followed up",
                    ),
                ],
            ),
            Panel(
                "Last seen (seconds ago)",
                [("time() - hearth_wake_host_last_seen_timestamp_seconds", "{{host}}")],
                unit="s",
            ),
        ],
    ),
    Dashboard(
        uid="hearth-audio",
        title="hearth / Audio",
        description="Streams, zones and the patch between them; stream health from RTP.",
        panels=[
            Panel("Streams up", [("sum(hearth_audio_stream_up)", "up")], kind="stat", width=6),
            Panel("Zones up", [("sum(hearth_audio_zone_up)", "up")], kind="stat", width=6),
            Panel(
                "RTP packets per second",
                [
                    (
                        f"sum by (stream) (rate(hearth_audio_rtp_packets_total[{RATE}]))",
                        "{{stream}}",
                    )
                ],
                unit="pps",
            ),
            Panel(
                "Loss (ratio of packets)",
                [
                    (
                        f"sum by (stream) (rate(hearth_audio_rtp_lost_packets_total[{RATE}]))"
                        f" / (sum by (stream) (rate(hearth_audio_rtp_packets_total[{RATE}]))"
                        f" + sum by (stream) (rate(hearth_audio_rtp_lost_packets_total[{RATE}])))",
                        "{{stream}}",
                    )
                ],
                unit="percentunit",
            ),
            Panel("Jitter (RFC 3550)", [("hearth_audio_rtp_jitter_seconds", "{{stream}}")], "s"),
            Panel(
                "Age of the last packet",
                [("hearth_audio_rtp_last_packet_age_seconds", "{{stream}}")],
                unit="s",
            ),
            Panel("Zone reachable", [("hearth_audio_zone_up", "{{zone}}")]),
            Panel(
                "Patch: zone subscribed to stream",
                [("hearth_audio_zone_subscribed", "{{zone}} <- {{stream}}")],
            ),
            Panel("Zone latency", [("hearth_audio_zone_latency_seconds", "{{zone}}")], unit="s"),
            Panel(
                "Reconciliation actions",
                [
                    (
                        "sum by (target, action) (hearth_audio_reconcile_actions_total)",
                        "{{target}} {{action}}",
                    )
                ],
            ),
        ],
    ),
    Dashboard(
        uid="hearth-ci",
        title="hearth / CI",
        description="Zuul and Gerrit as the ci service sees them: freshness, queues, watches.",
        panels=[
            Panel("Data age", [("hearth_ci_data_age_seconds", "{{source}}")], unit="s"),
            Panel(
                "Poll time p90",
                [
                    (
                        "histogram_quantile(0.9, sum by (le, source)"
                        f" (rate(hearth_ci_poll_seconds_bucket[{RATE}])))",
                        "{{source}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "Poll errors per second",
                [
                    (
                        f"sum by (source) (rate(hearth_ci_poll_errors_total[{RATE}]))"
                        f" or sum by (source) (rate(hearth_ci_poll_seconds_count[{RATE}])) * 0",
                        "{{source}}",
                    )
                ],
            ),
            Panel("Items per pipeline", [("hearth_ci_queue_items", "{{pipeline}}")]),
            Panel(
                "Watched items by status",
                [("sum by (watch, status) (hearth_ci_watched_items)", "{{watch}} {{status}}")],
            ),
            Panel(
                "Zuul event queues",
                [("hearth_ci_zuul_event_queue_length", "{{queue}}")],
                description="Zuul's own backlog (management and trigger events, results).",
            ),
        ],
    ),
    Dashboard(
        uid="hearth-gateway",
        title="hearth / Gateway",
        description="The front door and every service behind it: calls, latency, health.",
        panels=[
            Panel("Backends up", [("hearth_gateway_backend_up", "{{backend}}")]),
            Panel("Services serving", [("hearth_service_serving", "{{service}}")]),
            Panel("Scrape targets up", [("up", "{{job}}")]),
            Panel(
                "gRPC calls per second, by service",
                [
                    (
                        f"sum by (job, grpc_service) (rate(grpc_server_handled_total[{RATE}]))",
                        "{{job}} {{grpc_service}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "gRPC answers by code",
                [
                    (
                        "sum by (job, grpc_code) (grpc_server_handled_total)",
                        "{{job}} {{grpc_code}}",
                    )
                ],
            ),
            Panel(
                "gRPC handling time p99 (since start)",
                [
                    (
                        "histogram_quantile(0.99, sum by (le, job)"
                        " (grpc_server_handling_seconds_bucket))",
                        "{{job}}",
                    )
                ],
                unit="s",
            ),
            Panel(
                "Open streams (Watch, SSE)",
                [("sum by (job) (grpc_server_active_streams)", "{{job}}")],
            ),
            Panel(
                "Resident memory",
                [("process_resident_memory_bytes", "{{job}}")],
                unit="bytes",
            ),
        ],
    ),
]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
        for i, (expr, legend) in enumerate(panel.exprs)
    ]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": targets,
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels, x, y = [], 0, 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y = 0, y + 8
        panels.append(_panel_json(panel, panel_id, x, y))
        x += panel.width
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["hearth"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }


def files() -> dict[Path, str]:
    return {
        OUT / f"{d.uid.removeprefix('hearth-')}.json": json.dumps(render(d), indent=2) + "\n"
        for d in DASHBOARDS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a dashboard is stale")
    args = parser.parse_args()
    wanted = files()
    if args.check:
        stale = [p.name for p, text in wanted.items() if not p.exists() or p.read_text() != text]
        if stale:
            sys.exit("dashboards are stale (run scripts/make_dashboards.py): " + ", ".join(stale))
        print("dashboards are up to date")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in wanted.items():
        path.write_text(text)
    print(f"wrote {len(wanted)} dashboards into {OUT.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
