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

_CHANGE = re.compile(r"^(\d+),(\d+)$")

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
    for pipeline in doc.get("pipelines") or []:
        for queue in pipeline.get("change_queues") or []:
            for head in queue.get("heads") or []:
                yield from head


def parse_status(doc: Any) -> ZuulStatus:
    """Parse any generation of Zuul's status document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("pipelines"), list):
        raise ZuulFormatError("not a Zuul status document (no 'pipelines' list)")
    generation = detect_generation(doc)
    status = ZuulStatus(
        generation=generation,
        version=str(doc.get("zuul_version") or ""),
        message=str(doc.get("message") or ""),
        last_reconfigured_ms=_int(doc.get("last_reconfigured")),
        event_queues=_event_queues(doc),
    )
    for raw in doc["pipelines"]:
        status.pipelines.append(_pipeline(raw, generation))
    return status


def _event_queues(doc: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in doc.items():
        if key.endswith("_event_queue") and isinstance(value, dict):
            out[key.removesuffix("_event_queue")] = int(value.get("length") or 0)
    for conn, value in (doc.get("connection_event_queues") or {}).items():
        if isinstance(value, dict):
            out[f"connection:{conn}"] = int(value.get("length") or 0)
    return out


def _pipeline(raw: dict[str, Any], generation: str) -> ZPipeline:
    manager = str(raw.get("manager") or "")
    pipeline = ZPipeline(
        name=str(raw.get("name") or ""), description=str(raw.get("description") or ""), queues=[]
    )
    for rq in raw.get("change_queues") or []:
        items = [_item(ri, generation) for head in rq.get("heads") or [] for ri in head]
        dependent = manager == "dependent" or any(i.item_ahead for i in items)
        pipeline.queues.append(
            ZQueue(
                name=str(rq.get("name") or ""),
                items=items,
                branch=str(rq.get("branch") or ""),
                dependent=dependent,
            )
        )
    return pipeline


def _item(raw: dict[str, Any], generation: str) -> ZItem:
    key = str(raw.get("id") or "")
    if generation == "v10" and raw.get("refs"):
        refs = [_ref(r, str(r.get("id") or "")) for r in raw["refs"]]
    else:
        refs = [_ref(raw, key)]
    return ZItem(
        key=key,
        refs=refs,
        project=refs[0].project if refs else str(raw.get("project") or ""),
        enqueue_ms=_int(raw.get("enqueue_time")),
        remaining_ms=_int(raw.get("remaining_time")),
        item_ahead=raw.get("item_ahead") or None,
        items_behind=[str(b) for b in raw.get("items_behind") or []],
        failing_reasons=[str(r) for r in raw.get("failing_reasons") or []],
        jobs=[_job(rj) for rj in raw.get("jobs") or []],
        live=bool(raw.get("live", True)),
        active=bool(raw.get("active", True)),
    )


def _ref(raw: dict[str, Any], change_id: str) -> ZRef:
    match = _CHANGE.match(change_id)
    owner = raw.get("owner") or {}
    if not isinstance(owner, dict):
        owner = {}
    return ZRef(
        change=change_id if match else "",
        number=int(match.group(1)) if match else 0,
        patchset=int(match.group(2)) if match else 0,
        project=str(raw.get("project") or ""),
        url=str(raw.get("url") or ""),
        ref=str(raw.get("ref") or ""),
        owner_name=str(owner.get("name") or ""),
        owner_username=str(owner.get("username") or ""),
    )


def _job(raw: dict[str, Any]) -> ZJob:
    elapsed = _int(raw.get("elapsed_time"))
    result = raw.get("result")
    return ZJob(
        name=str(raw.get("name") or ""),
        result=str(result) if result else None,
        voting=bool(raw.get("voting", True)),
        elapsed_ms=elapsed,
        remaining_ms=_int(raw.get("remaining_time")),
        estimated_s=_float(raw.get("estimated_time")),
        url=str(raw.get("url") or ""),
        started=elapsed is not None or raw.get("start_time") is not None,
        pre_fail=bool(raw.get("pre_fail", False)),
    )


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
