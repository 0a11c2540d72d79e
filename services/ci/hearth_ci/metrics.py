"""The ci service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POLL_SECONDS = Histogram(
    "hearth_ci_poll_seconds",
    "Time one poll of a source took (request + parse).",
    ("source",),
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
POLL_ERRORS = Counter("hearth_ci_poll_errors_total", "Failed polls per source.", ("source",))
DATA_AGE = Gauge(
    "hearth_ci_data_age_seconds", "Age of the last good data from a source.", ("source",)
)
QUEUE_ITEMS = Gauge("hearth_ci_queue_items", "Items in a Zuul pipeline.", ("pipeline",))
WATCHED_ITEMS = Gauge(
    "hearth_ci_watched_items", "Items matching a watch, by status.", ("watch", "status")
)
EVENT_QUEUE = Gauge(
    "hearth_ci_zuul_event_queue_length", "Length of a Zuul event queue.", ("queue",)
)
UPSTREAM_REJECTED = Counter(
    "hearth_ci_upstream_rejected_total",
    "Upstream answers refused whole (too_large, invalid_json, non_finite, too_deep, shape, "
    "...) and malformed parts skipped inside accepted ones (pipeline, item, job, field_type, "
    "time_range, ...), by source and reason.",
    ("source", "reason"),
)
INLINE_QUERIES = Gauge(
    "hearth_ci_inline_queries", "Distinct inline Gerrit queries currently cached or polled."
)
INLINE_REFUSED = Counter(
    "hearth_ci_inline_refused_total",
    "Inline dashboards refused because a cap on distinct inline queries was reached.",
    ("cap",),
)
