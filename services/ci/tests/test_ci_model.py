"""The model on its own: generation detection, statuses, progress and ETA, events."""

from __future__ import annotations

import json
from typing import Any

from hearth.ci.v1 import ci_pb2
from hearth_ci.dashboard import build_dashboard, classify, eta_ms, progress
from hearth_ci.events import diff
from hearth_ci.replay import default_fixtures, v3_shape, v10_shape
from hearth_ci.sources import SourceHealth
from hearth_ci.zuul import detect_generation, parse_status

Kind = ci_pb2.DashboardEvent.Kind


def _doc(name: str = "v2-status-tree.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((default_fixtures() / name).read_text())
    return data


def test_generations_are_detected() -> None:
    doc = _doc()
    assert detect_generation(doc) == "v2"
    assert detect_generation(v3_shape(doc)) == "v3"
    assert detect_generation(v10_shape(doc)) == "v10"


def test_v10_item_with_several_changes() -> None:
    doc = v10_shape(_doc())
    item = doc["pipelines"][1]["change_queues"][2]["heads"][0][0]
    item["refs"].append({**item["refs"][0], "id": "50000,2", "project": "openstack/nova"})
    status = parse_status(doc)
    zitem = status.pipelines[1].queues[2].items[0]
    assert [r.change for r in zitem.refs] == ["48418,1", "50000,2"]
    dash = build_dashboard(status, None, ci_pb2.Filter(changes=["50000"]))
    (only,) = [i for p in dash.pipelines for q in p.queues for i in q.items]
    assert only.change == "50000,2" and list(only.changes) == ["48418,1", "50000,2"]
    assert only.zuul_id == item["id"]


def test_progress_is_weighted_by_estimates_and_eta_extrapolates() -> None:
    status = parse_status(_doc())
    gate = status.pipelines[1].queues[2]
    head = gate.items[0]  # 48418,1: 9 jobs, 7 finished, 2 running with estimates
    finished = sum(1 for j in head.jobs if j.finished)
    assert finished == 7
    # Weighted: the long running devstack jobs count more than the quick docs/pep8 ones.
    assert 0.9 < progress(head) < 0.95
    assert eta_ms(head, progress(head), 0) == head.remaining_ms == 340565
    head.remaining_ms = None
    assert head.enqueue_ms is not None
    now = head.enqueue_ms + 600_000
    assert eta_ms(head, 0.75, now) == 200_000  # 10 min spent, 3/4 done -> 200 s more
    verdicts = classify(gate)
    assert verdicts["48423,2"].behind_key == "48418,1"


def _dash(*items: tuple[str, int, int, str]) -> ci_pb2.Dashboard:
    queue = ci_pb2.Queue(name="q", pipeline="gate", dependent=True)
    for change, status, position, ahead in items:
        queue.items.add(
            change=change, status=status, position=position, item_ahead=ahead, pipeline="gate"
        )
    return ci_pb2.Dashboard(pipelines=[ci_pb2.Pipeline(name="gate", queues=[queue])])


def test_events_between_dashboards() -> None:
    passing, failing = ci_pb2.ITEM_STATUS_PASSING, ci_pb2.ITEM_STATUS_FAILING
    behind, queued = ci_pb2.ITEM_STATUS_BEHIND_FAILURE, ci_pb2.ITEM_STATUS_QUEUED
    old = _dash(("1,1", passing, 1, ""), ("2,1", passing, 2, "1,1"),
                ("3,1", passing, 3, "2,1"))  # fmt: skip
    new = _dash(("2,1", failing, 1, ""), ("3,1", behind, 2, "2,1"),
                ("4,1", queued, 3, "3,1"))  # fmt: skip
    kinds = {(Kind.Name(e.kind), e.item.change) for e in diff(old, new)}
    assert kinds == {
        ("KIND_STARTED_FAILING", "2,1"),
        ("KIND_REACHED_HEAD", "2,1"),
        ("KIND_BEHIND_FAILURE", "3,1"),
        ("KIND_ENQUEUED", "4,1"),
        ("KIND_LEFT_PIPELINE", "1,1"),
    }


def test_backoff_doubles_with_jitter_up_to_the_maximum() -> None:
    health = SourceHealth("zuul", backoff_base=2, backoff_max=120)
    assert health.retry_delay(30) == 30
    delays = []
    for _ in range(9):
        health.failed("down")
        delays.append(health.retry_delay(30))
    for n, delay in enumerate(delays[:6]):
        assert 0.75 * 2 * 2**n <= delay <= 1.25 * 2 * 2**n
    assert all(90 <= d <= 150 for d in delays[6:])
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, never in step
    health.succeeded()
    assert health.retry_delay(30) == 30 and not health.stale
