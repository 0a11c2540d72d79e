"""What every benchmark writes: ``bench/results/<name>.json`` with figures next to targets.

A figure is one number with its unit and, where the issue sets one, its target, e.g.
``Figure("reaction p99", 1.8, "ms", target="< 3")``. ``series`` holds lists of numbers the
summary page plots (e.g. latency samples).
"""

from __future__ import annotations

import json
import operator
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: str = ""  # e.g. "< 3" or "<= 1.5"; empty = reported only
    note: str = ""

    @property
    def ok(self) -> bool | None:
        if not self.target:
            return None
        op, _, bound = self.target.partition(" ")
        return bool(_OPS[op](self.value, float(bound)))


@dataclass
class Result:
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, unit: str, target: str = "", note: str = "") -> None:
        self.figures.append(Figure(name, value, unit, target, note))

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        data = {
            "name": self.name,
            "title": self.title,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {
                "cpus": _cpus(),
                "python": platform.python_version(),
                "kernel": platform.release(),
            },
            "figures": [{**asdict(f), "ok": f.ok} for f in self.figures],
            "series": self.series,
            "notes": self.notes,
        }
        path.write_text(json.dumps(data, indent=2))
        self.print()
        return path

    def print(self) -> None:
        print(f"== {self.title}")
        for f in self.figures:
            verdict = {None: "", True: "  [meets target]", False: "  [MISSES target]"}[f.ok]
            target = f"  (target {f.target} {f.unit})" if f.target else ""
            print(f"  {f.name:<48} {f.value:>12.4g} {f.unit}{target}{verdict}")
        for note in self.notes:
            print(f"  note: {note}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


async def sequential(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    """Seconds each of ``count`` calls took, one after another."""
    out = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out
