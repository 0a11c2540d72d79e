#!/usr/bin/env python3
"""`make bench`: run every bench/bench_*.py, then write bench/results/index.html and summary.md.

Each benchmark writes bench/results/<name>.json (see hearth_testing.bench) and prints its
figures next to their targets. ``bench/run_all.py NAME...`` runs only those.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def run(selected: list[str]) -> int:
    failures = 0
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if selected and name not in selected:
            continue
        print(f"\n### {name}", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"### {name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        failures += code != 0
    write_summary()
    write_markdown()
    return 1 if failures else 0


def _svg_bars(values: list[float], width: int = 360, height: int = 80) -> str:
    """A tiny histogram of ``values`` as inline SVG (no plotting library needed)."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    bins = 30
    counts = [0] * bins
    for v in values:
        i = 0 if hi == lo else min(bins - 1, int((v - lo) / (hi - lo) * bins))
        counts[i] += 1
    top = max(counts)
    bar = width / bins
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - c / top * height:.1f}" width="{bar - 1:.1f}" '
        f'height="{c / top * height:.1f}" fill="#c0632b"/>'
        for i, c in enumerate(counts)
    )
    return (
        f'<svg width="{width}" height="{height + 14}" role="img">{rects}'
        f'<text x="0" y="{height + 12}" font-size="10">{lo:.4g}</text>'
        f'<text x="{width - 40}" y="{height + 12}" font-size="10">{hi:.4g}</text></svg>'
    )


def write_summary() -> Path:
    parts = [
        "<!doctype html><meta charset=utf-8><title>hearth benchmarks</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "td,th{padding:2px 8px;text-align:left}.ok{color:#070}.miss{color:#b00}</style>",
        "<h1>hearth benchmarks</h1>",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        parts.append(
            f"<h2>{html.escape(data['title'])}</h2><p>{data['time']}, "
            f"{data['machine']['cpus']} CPUs</p><table><tr><th>figure<th>value"
            "<th>target<th></tr>"
        )
        for f in data["figures"]:
            verdict = {None: "", True: "<td class=ok>meets", False: "<td class=miss>misses"}
            parts.append(
                f"<tr><td>{html.escape(f['name'])}<td>{f['value']:.4g} {f['unit']}"
                f"<td>{html.escape(f['target'])}{verdict[f['ok']]}</tr>"
            )
        parts.append("</table>")
        for series, values in data.get("series", {}).items():
            parts.append(f"<h3>{html.escape(series)}</h3>{_svg_bars(values)}")
        parts += [f"<p>{html.escape(n)}</p>" for n in data.get("notes", [])]
    out = RESULTS / "index.html"
    RESULTS.mkdir(exist_ok=True)
    out.write_text("\n".join(parts))
    print(f"\nsummary: {out}")
    return out


def write_markdown(results: Path = RESULTS) -> Path:
    """One table of every figure in ``results/*.json``: what the documents point to."""
    lines = [
        "# hearth benchmarks",
        "",
        "Written by `make bench` (bench/run_all.py) from bench/results/*.json.",
        "",
        "| benchmark | figure | value | target | verdict | measured |",
        "|---|---|---|---|---|---|",
    ]
    for path in sorted(results.glob("*.json")):
        data = json.loads(path.read_text())
        if "figures" not in data:  # fuzz.json (hearth_testing.figures) has its own shape
            continue
        when = f"{data['time']}, {data['machine']['cpus']} CPUs"
        for f in data["figures"]:
            verdict = {None: "", True: "meets", False: "misses"}[f["ok"]]
            target = f"{f['target']} {f['unit']}" if f["target"] else ""
            cells = [
                data["name"],
                f["name"],
                f"{f['value']:.4g} {f['unit']}",
                target,
                verdict,
                when,
            ]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out = results / "summary.md"
    results.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"summary: {out}")
    return out


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
