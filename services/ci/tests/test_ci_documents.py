# ruff: noqa: F811  (fixtures come from hearth_ci.testkit; tests take them as arguments)
"""The recorded Zuul documents, served by the replay server, through the ci service."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hearth.ci.v1 import ci_pb2
from hearth_ci.replay import control
from hearth_ci.testkit import channel, ci, fixtures_dir, replay, stub  # noqa: F401  # fixtures
from hearth_testing import wait_for_async

FAILING = ci_pb2.ITEM_STATUS_FAILING
BEHIND = ci_pb2.ITEM_STATUS_BEHIND_FAILURE


def _recorded_gate(fixtures_dir: Path) -> list[dict[str, Any]]:
    doc = json.loads((fixtures_dir / "v2-status-tree.json").read_text())
    gate = next(p for p in doc["pipelines"] if p["name"] == "gate")
    return [q for q in gate["change_queues"] if q["heads"]]


async def _pipelines(
    stub: Any,
    holds: Callable[[ci_pb2.ListPipelinesResponse], bool] = lambda r: len(r.pipelines) > 0,
) -> ci_pb2.ListPipelinesResponse:
    async def check() -> ci_pb2.ListPipelinesResponse | None:
        reply: ci_pb2.ListPipelinesResponse = await stub.ListPipelines(
            ci_pb2.ListPipelinesRequest()
        )
        return reply if holds(reply) else None

    found = await wait_for_async("Zuul's pipelines", check)
    assert found is not None
    return found


async def test_tree_gate_comes_out_in_order_with_positions(stub: Any, fixtures_dir: Path) -> None:
    reply = await _pipelines(stub)
    assert reply.zuul.api_generation == ci_pb2.ZUUL_API_GENERATION_V3
    assert [p.name for p in reply.pipelines] == [
        "check", "gate", "post", "pre-release", "release", "silent", "experimental", "periodic",
    ]  # fmt: skip
    gate = next(p for p in reply.pipelines if p.name == "gate")
    (recorded,) = _recorded_gate(fixtures_dir)
    (queue,) = gate.queues
    expected = [item["id"] for head in recorded["heads"] for item in head]
    assert len(recorded["heads"][1]) == 28
    assert [i.change for i in queue.items] == expected
    assert [i.position for i in queue.items] == list(range(1, 31))
    assert queue.dependent and queue.total == 30 and gate.total_items == 30
    tree = queue.items[2:]
    assert tree[0].change == "48271,1" and not tree[0].item_ahead
    assert tree[-1].change == "48560,1" and tree[-1].item_ahead == "48721,1"


async def test_items_behind_the_failing_change_name_it(stub: Any) -> None:
    gate = next(p for p in (await _pipelines(stub)).pipelines if p.name == "gate")
    items = {i.change: i for i in gate.queues[0].items}
    head = items["48418,1"]
    assert head.status == FAILING and head.job_string == "++--~~-++"
    behind = items["48423,2"]
    assert behind.status == BEHIND
    assert behind.behind_change == "48418,1"
    assert behind.behind_job == "gate-ceilometer-python26"
    assert "a needed change is failing" in behind.failing_reasons
    # Failing leaves of the speculative tree are FAILING themselves, nothing is behind them.
    failing = {c for c, i in items.items() if i.status == FAILING}
    assert failing == {
        "48418,1", "48591,1", "47479,2", "39668,13", "48625,1", "48627,1", "48601,1",
        "48164,1", "48202,1", "48553,4", "48636,3",
    }  # fmt: skip
    assert {c for c, i in items.items() if i.status == BEHIND} == {"48423,2"}
    assert items["48271,1"].status == ci_pb2.ITEM_STATUS_PASSING


async def test_counts_per_queue_match_the_document(stub: Any, fixtures_dir: Path) -> None:
    reply = await _pipelines(stub)
    doc = json.loads((fixtures_dir / "v2-status-tree.json").read_text())
    for recorded, pipeline in zip(doc["pipelines"], reply.pipelines, strict=True):
        want = {
            q["name"]: sum(len(h) for h in q["heads"])
            for q in recorded["change_queues"]
            if any(q["heads"])
        }
        got = {q.name: q.total for q in pipeline.queues}
        assert got == want, pipeline.name
        jobs = sum(len(i["jobs"]) for q in recorded["change_queues"] for h in q["heads"] for i in h)
        assert sum(len(i.jobs) for q in pipeline.queues for i in q.items) == jobs
    assert reply.zuul.event_queues["trigger"] == 85
    assert reply.zuul.event_queues["result"] == 2
    assert reply.zuul.event_queues["management"] == 0


async def test_basic_document_shows_banner_and_unstable(stub: Any, replay: Any) -> None:
    await control(replay.url, document="v2-status-basic.json")
    reply = await _pipelines(stub, lambda r: r.zuul.message == "Example info message")
    test = next(p for p in reply.pipelines if p.name == "test")
    jobs = [j for q in test.queues for i in q.items for j in i.jobs]
    unstable = [j for j in jobs if j.raw_result == "UNSTABLE"]
    assert len(unstable) == 1 and unstable[0].result == ci_pb2.JOB_RESULT_UNSTABLE
    assert unstable[0].name == "gerrit-merge" and not unstable[0].voting
    items = {i.change: i for q in test.queues for i in q.items}
    assert (
        items["10102,1"].status == ci_pb2.ITEM_STATUS_PASSING
    )  # a non-voting UNSTABLE does not fail it
    assert items["10104,1"].status == FAILING and items["10104,1"].job_string == "+-_"
    assert reply.zuul.last_reconfigured.ToMilliseconds() > 0
    assert reply.zuul.version == "3.19.1"  # v3 shape of the recording on the tenant API
