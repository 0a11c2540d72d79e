"""Read Prometheus metrics the way Prometheus does: over HTTP, in the text format."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def scrape(address: str, timeout: float = 5.0) -> list[Sample]:
    """Every sample at ``http://<address>/metrics``."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def metric_value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """Sum of the samples named ``name`` whose labels include ``labels`` (None if absent)."""
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None
