"""What changed between two dashboards, as the events WatchDashboard streams."""

from __future__ import annotations

from hearth.ci.v1 import ci_pb2

Kind = ci_pb2.DashboardEvent.Kind


def _items(dash: ci_pb2.Dashboard) -> dict[tuple[str, str], ci_pb2.Item]:
    return {
        (item.pipeline, item.change): item
        for pipeline in dash.pipelines
        for queue in pipeline.queues
        for item in queue.items
    }


def _at_head(item: ci_pb2.Item) -> bool:
    return item.position == 1 or (item.position > 0 and not item.item_ahead)


def diff(old: ci_pb2.Dashboard, new: ci_pb2.Dashboard) -> list[ci_pb2.DashboardEvent]:
    """Enqueued, started failing, now behind a failure, reached the head, left the pipeline."""
    before, after = _items(old), _items(new)
    events: list[ci_pb2.DashboardEvent] = []

    def add(kind: int, item: ci_pb2.Item, message: str) -> None:
        event = ci_pb2.DashboardEvent(kind=kind, item=item, message=message)  # type: ignore[arg-type]
        event.time.CopyFrom(new.time)
        events.append(event)

    for key, item in after.items():
        prev = before.get(key)
        where = f"{item.change} in {item.pipeline}"
        if prev is None:
            add(Kind.KIND_ENQUEUED, item, f"{where}: enqueued")
            continue
        if item.status == ci_pb2.ITEM_STATUS_FAILING and prev.status != ci_pb2.ITEM_STATUS_FAILING:
            add(Kind.KIND_STARTED_FAILING, item, f"{where}: started failing")
        if (
            item.status == ci_pb2.ITEM_STATUS_BEHIND_FAILURE
            and prev.status != ci_pb2.ITEM_STATUS_BEHIND_FAILURE
        ):
            behind = f" {item.behind_change}" if item.behind_change else " a failure"
            add(Kind.KIND_BEHIND_FAILURE, item, f"{where}: now behind{behind}")
        if _at_head(item) and not _at_head(prev):
            add(Kind.KIND_REACHED_HEAD, item, f"{where}: reached the head of {item.queue}")
    for key, item in before.items():
        if key not in after:
            add(Kind.KIND_LEFT_PIPELINE, item, f"{item.change} left {item.pipeline}")
    return events
