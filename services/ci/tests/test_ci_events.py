# ruff: noqa: F811  (fixtures come from hearth_ci.testkit; tests take them as arguments)
"""Variants of the recorded gate served by the replay server: the WatchDashboard stream's
events as the gate moves, statuses derived from the document, ignored pipelines, and the
Gerrit cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from hearth.ci.v1 import ci_pb2
from hearth_ci.replay import ReplayServer, control, iter_items
from hearth_ci.sources import GerritClient
from hearth_ci.testkit import (  # noqa: F401  # fixtures
    channel,
    ci,
    dashboard_when,
    events_until,
    fixtures_dir,
    kinds_of,
    replay,
    stub,
)

Kind = ci_pb2.DashboardEvent.Kind
HEAD, BEHIND = "48418,1", "48423,2"  # the recorded gate head (failing) and the item behind it


def _recording(fixtures_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((fixtures_dir / "v2-status-tree.json").read_text())
    return doc


def _item(doc: dict[str, Any], change: str) -> dict[str, Any]:
    return next(i for i in iter_items(doc) if i.get("id") == change)


def _gate_still_passing(doc: dict[str, Any]) -> dict[str, Any]:
    """The gate a few minutes earlier: the head's failed jobs and the canceled jobs of the
    item behind it are still running, and nothing has failed yet."""
    for change in (HEAD, BEHIND):
        item = _item(doc, change)
        item["failing_reasons"] = []
        for job in item["jobs"]:
            if job["result"] != "SUCCESS":
                job["result"] = None
    return doc


def _head_merged(doc: dict[str, Any]) -> dict[str, Any]:
    """The gate once the head has left: the item behind it is the new head."""
    gate = next(p for p in doc["pipelines"] if p["name"] == "gate")
    for queue in gate["change_queues"]:
        for head in queue["heads"]:
            if head and head[0]["id"] == HEAD:
                head.pop(0)
                head[0]["item_ahead"] = None
    return doc


async def test_stream_follows_the_gate_failing_and_moving(
    stub: Any, replay: ReplayServer, fixtures_dir: Path
) -> None:
    await control(replay.url, upload=_gate_still_passing(_recording(fixtures_dir)))
    watch = ci_pb2.Watch(filter=ci_pb2.Filter(changes=["48418", "48423"]))
    await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="gate", watch=watch))
    request = ci_pb2.GetDashboardRequest(watch="watches/gate")
    await dashboard_when(
        stub,
        request,
        "both changes passing",
        lambda d: (
            [i.status for p in d.pipelines for q in p.queues for i in q.items]
            == [ci_pb2.ITEM_STATUS_PASSING, ci_pb2.ITEM_STATUS_PASSING]
        ),
    )
    call = stub.WatchDashboard(ci_pb2.WatchDashboardRequest(watch="watches/gate"))
    first = await asyncio.wait_for(call.read(), 10)
    assert first.kind == Kind.KIND_SNAPSHOT and first.dashboard.matching_items == 2

    await control(replay.url, document="v2-status-tree.json")  # the head's jobs failed
    events, _ = await events_until(call, {Kind.KIND_STARTED_FAILING})
    assert kinds_of(events) == {("KIND_STARTED_FAILING", HEAD), ("KIND_BEHIND_FAILURE", BEHIND)}
    behind = next(e for e in events if e.kind == Kind.KIND_BEHIND_FAILURE)
    assert behind.item.behind_change == HEAD
    assert behind.item.behind_job == "gate-ceilometer-python26"
    assert behind.message == f"{BEHIND} in gate: now behind {HEAD}"

    await control(replay.url, upload=_head_merged(_recording(fixtures_dir)))
    events, _ = await events_until(call, {Kind.KIND_REACHED_HEAD})
    assert kinds_of(events) == {("KIND_REACHED_HEAD", BEHIND), ("KIND_LEFT_PIPELINE", HEAD)}
    head = next(e for e in events if e.kind == Kind.KIND_REACHED_HEAD)
    assert head.item.position == 1 and not head.item.item_ahead
    assert "reached the head" in head.message
    call.cancel()


async def test_queued_and_unknown_come_from_the_document(
    stub: Any, replay: ReplayServer, fixtures_dir: Path
) -> None:
    doc = _recording(fixtures_dir)
    waiting = _item(doc, "48734,1")  # check: two jobs running in the recording
    for job in waiting["jobs"]:
        job.update(result=None, elapsed_time=None, remaining_time=None)
    _item(doc, "48724,3")["jobs"] = []  # check: Zuul lists no jobs (yet)
    await control(replay.url, upload=doc)
    flt = ci_pb2.Filter(changes=["48734", "48724", "40703"])
    dash = await dashboard_when(
        stub,
        ci_pb2.GetDashboardRequest(filter=flt),
        "the uploaded document",
        lambda d: d.matching_items == 3 and any(not i.jobs for i in _items(d)),
    )
    items = {i.change: i for i in _items(dash)}
    assert items["48734,1"].status == ci_pb2.ITEM_STATUS_QUEUED
    assert items["48734,1"].job_string == "__"
    assert all(j.result == ci_pb2.JOB_RESULT_WAITING for j in items["48734,1"].jobs)
    assert items["48724,3"].status == ci_pb2.ITEM_STATUS_UNKNOWN and not items["48724,3"].jobs
    assert items["40703,7"].status == ci_pb2.ITEM_STATUS_PASSING  # the untouched neighbour


def _items(dash: ci_pb2.Dashboard) -> list[ci_pb2.Item]:
    return sorted(
        (i for p in dash.pipelines for q in p.queues for i in q.items), key=lambda i: i.change
    )


async def test_ignored_pipelines_leave_the_dashboard(stub: Any) -> None:
    everything = ci_pb2.Filter(projects=["openstack/nova", "openstack/heat"])
    full = await dashboard_when(
        stub,
        ci_pb2.GetDashboardRequest(filter=everything),
        "nova and heat changes",
        lambda d: d.matching_items > 0,
    )
    per_pipeline = {p.name: sum(len(q.items) for q in p.queues) for p in full.pipelines}
    assert per_pipeline["gate"] > 0 and per_pipeline["check"] > 0
    ignoring = ci_pb2.Filter()
    ignoring.CopyFrom(everything)
    ignoring.ignored_pipelines.append("gate")
    watch = ci_pb2.Watch(filter=ignoring)
    await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="nogate", watch=watch))
    for request in (
        ci_pb2.GetDashboardRequest(filter=ignoring),
        ci_pb2.GetDashboardRequest(watch="watches/nogate"),
    ):
        dash = await stub.GetDashboard(request)
        assert [p.name for p in dash.pipelines] == [p for p in per_pipeline if p != "gate"]
        assert dash.matching_items == full.matching_items - per_pipeline["gate"]
        assert dash.filter_description.endswith("(ignoring gate)")


async def test_gerrit_cache_is_hit_while_updated_is_unchanged(replay: ReplayServer) -> None:
    queries = ["status:open (change:48418 OR change:48423 OR change:48385)"]
    async with aiohttp.ClientSession() as session:
        gerrit = GerritClient(session, replay.url, "danms", "secret")
        (first,) = await gerrit.query(queries)
        assert gerrit.cache_misses == 3 and gerrit.cache_hits == 0
        (again,) = await gerrit.query(queries)
        assert gerrit.cache_hits == 3 and gerrit.cache_misses == 3
        assert all(a is b for a, b in zip(first, again, strict=True))  # not parsed again
        await control(replay.url, new_patchset=[48423])  # Gerrit's `updated` moves on
        (moved,) = await gerrit.query(queries)
        assert gerrit.cache_hits == 5 and gerrit.cache_misses == 4
        by_number = {c.number: c for c in moved}
        old = {c.number: c for c in first}
        assert by_number[48423].current_patchset == old[48423].current_patchset + 1
        assert by_number[48423].updated != old[48423].updated
        assert by_number[48418] is old[48418]
    assert (await control(replay.url))["counters"]["gerrit"] == 3  # one request per query
