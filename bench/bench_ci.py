#!/usr/bin/env python3
"""ci: parse + merge + filter of Zuul status documents 1x, 10x and 100x the size of
v2-status-tree.json, memory, and Gerrit requests per refresh as matches grow.

Targets (issue 5): 10x document (~1 MB) parsed, merged and filtered in < 50 ms; Gerrit
requests per refresh constant.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
import tracemalloc
from typing import Any

import aiohttp

from hearth.ci.v1 import ci_pb2
from hearth_ci import filters
from hearth_ci.dashboard import build_dashboard, combine, gerrit_matches
from hearth_ci.replay import (
    ReplayServer,
    ReplayState,
    change_info,
    control,
    default_fixtures,
    iter_items,
    scale,
    shift_times,
)
from hearth_ci.sources import GerritClient, ZuulClient, parse_change, zuul_status_url
from hearth_ci.zuul import parse_status
from hearth_testing.bench import Result

FILTER = ci_pb2.Filter(user="danms", owners=["danms"], projects=["openstack/nova"], starred=True)


def gerrit_answers(doc: dict[str, Any]) -> list[list[Any]]:
    """What the replay Gerrit answers for FILTER's groups, parsed (the client's cache)."""
    owners, starred, nova = [], [], []
    for item in iter_items(doc):
        number, _, ps = str(item.get("id")).partition(",")
        if not ps:
            continue
        change = parse_change(change_info(int(number), int(ps), item["project"], "danms"))
        if change.owner_username == "danms":
            owners.append(change)
        if change.starred:
            starred.append(change)
        if change.project == "openstack/nova":
            nova.append(change)
    return [owners, starred, nova]


def one_pass(body: bytes, answers: list[list[Any]]) -> ci_pb2.Dashboard:
    status = parse_status(json.loads(body))
    matches = combine(filters.effective_groups(FILTER), answers, FILTER.operator)
    return build_dashboard(status, matches, FILTER)


def measure(factor: int, base: dict[str, Any], result: Result) -> None:
    doc = scale(base, factor)
    body = json.dumps(doc).encode()
    answers = gerrit_answers(doc)
    runs = 30 if factor <= 10 else 5
    one_pass(body, answers)  # warm up
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        dash = one_pass(body, answers)
        times.append((time.perf_counter() - start) * 1000)
    tracemalloc.start()
    one_pass(body, answers)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    items = sum(1 for _ in iter_items(doc))
    target = "< 50" if factor == 10 else ""
    result.add(f"{factor}x parse+merge+filter median", statistics.median(times), "ms", target)
    result.add(f"{factor}x parse+merge+filter max", max(times), "ms")
    result.add(f"{factor}x document size", len(body) / 1e6, "MB")
    result.add(f"{factor}x items in document", items, "items")
    result.add(f"{factor}x matching items", dash.matching_items, "items")
    result.add(f"{factor}x peak memory during a pass", peak / 1e6, "MB")
    result.series[f"{factor}x pass ms"] = times


async def gerrit_requests(result: Result) -> None:
    server = await ReplayServer(ReplayState(fixtures=default_fixtures())).start()
    try:
        async with aiohttp.ClientSession() as session:
            zuul = ZuulClient(session, zuul_status_url(server.url, "openstack"))
            gerrit = GerritClient(session, server.url, "danms", "secret")
            for factor in (1, 10, 50):
                await control(server.url, scale=factor)
                before = (await control(server.url))["counters"].get("gerrit", 0)
                refreshes = 3
                matching = 0
                for _ in range(refreshes):
                    await zuul.fetch()
                    matches = await gerrit_matches(gerrit, FILTER)
                    matching = build_dashboard(zuul.status, matches, FILTER).matching_items
                after = (await control(server.url))["counters"].get("gerrit", 0)
                per_refresh = (after - before) / refreshes
                result.add(
                    f"Gerrit requests per refresh, {matching} matching items",
                    per_refresh,
                    "requests",
                    "<= 1",
                )
    finally:
        await server.stop()


def main() -> None:
    result = Result("ci", "ci: Zuul status parse + merge + filter, Gerrit requests")
    base = shift_times(
        json.loads((default_fixtures() / "v2-status-tree.json").read_text()),
        int(time.time() * 1000),
    )
    for factor in (1, 10, 100):
        measure(factor, base, result)
    asyncio.run(gerrit_requests(result))
    result.notes.append(
        "A pass = json.loads of the document + parse (generation detection) + merging the "
        "parsed Gerrit answers + filtering + building the Dashboard message. Documents are "
        "v2-status-tree.json with every queue copied N times (change numbers offset)."
    )
    result.write()


if __name__ == "__main__":
    main()
