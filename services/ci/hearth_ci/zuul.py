"""Zuul's status document, in all three generations, parsed into one small model.

- v2 ``/status.json``: item ``id`` is "N,PS" (or a commit sha for ref items).
- v3-v9 ``/api/tenant/{t}/status``: the same shape plus ``ref``, ``project_canonical``,
  ``management_event_queue``.
- v10+: item ``id``/``item_ahead``/``items_behind`` are UUIDs and the changes are in
  ``refs[]``; pipelines carry ``manager``; ``connection_event_queues`` at the top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hearth_ci.upstream import NAME_LIMIT, TEXT_LIMIT, Reader

_CHANGE = re.compile(r"^(\d{1,10}),(\d{1,10})$")

# Results that mean a job failed (Zuul 3+ adds several to Jenkins' FAILURE/UNSTABLE).
FAILED_RESULTS = frozenset(
    {
        "FAILURE",
        "UNSTABLE",
        "ERROR",
        "TIMED_OUT",
        "POST_FAILURE",
        "NODE_FAILURE",
        "RETRY_LIMIT",
        "DISK_FULL",
        "MERGER_FAILURE",
        "CONFIG_ERROR",
        "LOST",
    }
)
# Results that mean a job will not run because of something else (the original's "?").
CANCELED_RESULTS = frozenset({"CANCELED", "SKIPPED", "ABORTED"})


class ZuulFormatError(ValueError):
    """The document is JSON but not a Zuul status document."""


@dataclass(slots=True)
class ZRef:
    """One change (or ref) of an item."""

    change: str  # "N,PS" or "" for a branch/tag ref
    number: int
    patchset: int
    project: str
    url: str
    ref: str
    owner_name: str = ""
    owner_username: str = ""


@dataclass(slots=True)
class ZJob:
    name: str
    result: str | None
    voting: bool
    elapsed_ms: int | None
    remaining_ms: int | None
    estimated_s: float | None
    url: str
    started: bool
    pre_fail: bool = False

    @property
    def failed(self) -> bool:
        return self.pre_fail or (self.result or "") in FAILED_RESULTS

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def estimate_ms(self) -> float | None:
        """How long the job takes in total, as far as Zuul tells."""
        if self.estimated_s:
            return self.estimated_s * 1000.0
        if self.elapsed_ms is not None and self.remaining_ms is not None:
            total = self.elapsed_ms + self.remaining_ms
            return float(total) if total > 0 else None
        return None


@dataclass(slots=True)
class ZItem:
    key: str  # Zuul's id: "N,PS", a sha, or a UUID
    refs: list[ZRef]
    project: str
    enqueue_ms: int | None
    remaining_ms: int | None
    item_ahead: str | None
    items_behind: list[str]
    failing_reasons: list[str]
    jobs: list[ZJob]
    live: bool = True
    active: bool = True


@dataclass(slots=True)
class ZQueue:
    name: str
    items: list[ZItem]  # queue order (heads flattened, each head in order)
    branch: str = ""
    dependent: bool = False


@dataclass(slots=True)
class ZPipeline:
    name: str
    description: str
    queues: list[ZQueue]

    @property
    def total_items(self) -> int:
        return sum(len(q.items) for q in self.queues)


@dataclass(slots=True)
class ZuulStatus:
    generation: str  # "v2", "v3" or "v10"
    version: str
    message: str
    last_reconfigured_ms: int | None
    event_queues: dict[str, int]
    pipelines: list[ZPipeline] = field(default_factory=list)

    @property
    def total_items(self) -> int:
        return sum(p.total_items for p in self.pipelines)


def detect_generation(doc: dict[str, Any]) -> str:
    """ "v10" when items carry ``refs``, "v3" with v3-only fields, else "v2"."""
    if "connection_event_queues" in doc:
        return "v10"
    for item in _iter_raw_items(doc):
        if "refs" in item:
            return "v10"
        if "project_canonical" in item or "ref" in item:
            return "v3"
    if "management_event_queue" in doc:
        return "v3"
    return "v2"


def _iter_raw_items(doc: dict[str, Any]) -> Any:
    """Every dict that sits where an item belongs (anything else is ignored here)."""
    for pipeline in _list(doc.get("pipelines")):
        if not isinstance(pipeline, dict):
            continue
        for queue in _list(pipeline.get("change_queues")):
            if not isinstance(queue, dict):
                continue
            for head in _list(queue.get("heads")):
                yield from (i for i in _list(head) if isinstance(i, dict))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_status(doc: Any, reader: Reader | None = None) -> ZuulStatus:
    """Parse any generation of Zuul's status document, whatever JSON it is.

    Total: a document that is not an object with a ``pipelines`` list raises
    ZuulFormatError; anything malformed inside is skipped and counted in ``reader``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("pipelines"), list):
        raise ZuulFormatError("not a Zuul status document (no 'pipelines' list)")
    r = reader or Reader("zuul")
    generation = detect_generation(doc)
    status = ZuulStatus(
        generation=generation,
        version=r.text(doc.get("zuul_version"), NAME_LIMIT),
        message=r.text(doc.get("message"), TEXT_LIMIT),
        last_reconfigured_ms=r.time_ms(doc.get("last_reconfigured")),
        event_queues=_event_queues(doc, r),
    )
    for raw in r.objs(doc["pipelines"], "pipeline"):
        status.pipelines.append(_pipeline(raw, generation, r))
    return status


MAX_EVENT_QUEUES = 64
QUEUE_NAME_LIMIT = 20_000


def _event_queues(doc: dict[str, Any], r: Reader) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in doc.items():
        if key.endswith("_event_queue") and isinstance(value, dict):
            name = r.text(key.removesuffix("_event_queue"), 64)
            out[name] = min(r.count(value.get("length")), 2**31 - 1)
    connections = r.obj(doc.get("connection_event_queues"), "event_queue") or {}
    for conn, value in connections.items():
        if isinstance(value, dict):
            out[f"connection:{r.text(conn, 64)}"] = min(r.count(value.get("length")), 2**31 - 1)
        else:
            r.skip("event_queue")
    if len(out) > MAX_EVENT_QUEUES:
        r.skip("event_queue")
        out = dict(sorted(out.items())[:MAX_EVENT_QUEUES])
    return out


def _pipeline(raw: dict[str, Any], generation: str, r: Reader) -> ZPipeline:
    manager = r.text(raw.get("manager"))
    pipeline = ZPipeline(
        name=r.text(raw.get("name")),
        description=r.text(raw.get("description"), TEXT_LIMIT),
        queues=[],
    )
    for rq in r.objs(raw.get("change_queues"), "queue"):
        items = [
            item
            for head in r.items(rq.get("heads"), "head")
            for ri in r.objs(head, "item")
            if (item := _item(ri, generation, r)) is not None
        ]
        dependent = manager == "dependent" or any(i.item_ahead for i in items)
        pipeline.queues.append(
            ZQueue(
                # Zuul 2 names a shared queue after all its projects: thousands of chars.
                name=r.text(rq.get("name"), QUEUE_NAME_LIMIT),
                items=items,
                branch=r.text(rq.get("branch")),
                dependent=dependent,
            )
        )
    return pipeline


def _item(raw: dict[str, Any], generation: str, r: Reader) -> ZItem | None:
    key = r.text(raw.get("id"))
    refs_raw = r.objs(raw.get("refs"), "ref") if generation == "v10" else []
    refs = [_ref(ref, r.text(ref.get("id")), r) for ref in refs_raw] or [_ref(raw, key, r)]
    ahead = r.text(raw.get("item_ahead"))
    return ZItem(
        key=key,
        refs=refs,
        project=refs[0].project or r.text(raw.get("project")),
        enqueue_ms=r.time_ms(raw.get("enqueue_time")),
        remaining_ms=r.duration_ms(raw.get("remaining_time")),
        item_ahead=ahead or None,
        items_behind=r.texts(raw.get("items_behind")),
        failing_reasons=r.texts(raw.get("failing_reasons"), TEXT_LIMIT),
        jobs=[_job(rj, r) for rj in r.objs(raw.get("jobs"), "job")],
        live=r.flag(raw.get("live"), True),
        active=r.flag(raw.get("active"), True),
    )


def _ref(raw: dict[str, Any], change_id: str, r: Reader) -> ZRef:
    match = _CHANGE.match(change_id)
    owner = r.obj(raw.get("owner"), "field_type") or {}
    number, patchset = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if number > 2**31 - 1 or patchset > 2**31 - 1:  # proto int32 fields
        r.skip("number_range")
        match, number, patchset = None, 0, 0
    return ZRef(
        change=change_id if match else "",
        number=number,
        patchset=patchset,
        project=r.text(raw.get("project")),
        url=r.url(raw.get("url")),
        ref=r.text(raw.get("ref")),
        owner_name=r.text(owner.get("name")),
        owner_username=r.text(owner.get("username")),
    )


def _job(raw: dict[str, Any], r: Reader) -> ZJob:
    elapsed = r.duration_ms(raw.get("elapsed_time"))
    result = r.text(raw.get("result"), 64)
    return ZJob(
        name=r.text(raw.get("name")),
        result=result or None,
        voting=r.flag(raw.get("voting"), True),
        elapsed_ms=elapsed,
        remaining_ms=r.duration_ms(raw.get("remaining_time")),
        estimated_s=r.duration_s(raw.get("estimated_time")),
        url=r.url(raw.get("url")),
        started=elapsed is not None or r.time_s(raw.get("start_time")) is not None,
        pre_fail=r.flag(raw.get("pre_fail"), False),
    )
