"""Zuul's queues + Gerrit's answers + a filter -> the Dashboard message.

Pure functions (no I/O but :func:`gerrit_matches`, the one Gerrit query step): the
service, the terminal dashboard in direct mode and the benchmark all ask Gerrit through
:func:`gerrit_matches` and build dashboards through :func:`build_dashboard`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hearth.ci.v1 import ci_pb2
from hearth_ci import filters
from hearth_ci.sources import Change, GerritClient, SourceHealth
from hearth_ci.zuul import CANCELED_RESULTS, ZItem, ZJob, ZQueue, ZuulStatus
from hearth_runtime.timeconv import duration_from_seconds, timestamp_from_epoch

NEEDED_FAILING = "a needed change is failing"


@dataclass(slots=True)
class Match:
    change: Change | None
    reasons: list[str] = field(default_factory=list)


def combine(
    groups: Sequence[filters.Group], results: Sequence[Sequence[Change]], operator: int
) -> dict[int, Match]:
    """Changes matching the filter (OR: any group, AND: every group) with the reasons."""
    per_group: list[dict[int, Change]] = [{c.number: c for c in res} for res in results]
    numbers: set[int] = set()
    if per_group:
        if operator == ci_pb2.OPERATOR_AND:
            numbers = set(per_group[0]).intersection(*per_group[1:])
        else:
            numbers = set().union(*per_group)
    out: dict[int, Match] = {}
    for number in numbers:
        match = Match(change=None)
        for group, found in zip(groups, per_group, strict=True):
            if number in found:
                match.change = found[number]
                match.reasons.append(group.reason)
        out[number] = match
    return out


async def gerrit_matches(gerrit: GerritClient, flt: ci_pb2.Filter) -> dict[int, Match]:
    """``flt``'s matches from ONE Gerrit request (each filter group one ``q=``), combined by
    the filter's operator. Raises SourceError (recorded in ``gerrit.health`` too)."""
    results = await gerrit.query(filters.gerrit_queries(flt))
    return combine(filters.effective_groups(flt), results, flt.operator)


def local_matches(zuul: ZuulStatus, flt: ci_pb2.Filter) -> dict[int, Match]:
    """Without Gerrit: match what Zuul alone tells (changes, projects, Zuul's owners).

    Groups that need Gerrit (topic, query, watched, starred) match nothing here.
    """
    groups = filters.effective_groups(flt)
    owners = set(flt.owners) or ({flt.user} if not filters.groups_of(flt) else set())
    results: list[list[Change]] = []
    for group in groups:
        found: dict[int, Change] = {}
        for pipeline in zuul.pipelines:
            for queue in pipeline.queues:
                for item in queue.items:
                    for ref in item.refs:
                        hit = (
                            (group.reason == "change" and str(ref.number) in flt.changes)
                            or (group.reason == "project" and ref.project in flt.projects)
                            or (group.reason == "owner" and ref.owner_username in owners)
                        )
                        if hit and ref.number:
                            found[ref.number] = _zuul_change(ref.number, item)
        results.append(list(found.values()))
    return combine(groups, results, flt.operator)


def _zuul_change(number: int, item: ZItem) -> Change:
    ref = next(r for r in item.refs if r.number == number)
    return Change(
        number=number,
        project=ref.project,
        branch="",
        topic="",
        subject="",
        status="",
        updated="",
        owner_name=ref.owner_name,
        owner_username=ref.owner_username,
        owner_email="",
        current_patchset=0,
        starred=False,
    )


def job_result(job: ZJob) -> int:
    if job.result is None:
        return ci_pb2.JOB_RESULT_RUNNING if job.started else ci_pb2.JOB_RESULT_WAITING
    if job.result in _KNOWN_RESULTS:  # Zuul's word is the enum value's name after the prefix
        return ci_pb2.JobResult.Value(f"JOB_RESULT_{job.result}")
    return ci_pb2.JOB_RESULT_OTHER


_KNOWN_RESULTS = {"SUCCESS", "FAILURE", "UNSTABLE", "CANCELED", "SKIPPED", "ABORTED"}


def job_char(job: ZJob) -> str:
    """The original's job string: + success, - failure, ? skipped/aborted/canceled,
    ~ running, _ not started."""
    if job.result is None:
        return "~" if job.started else "_"
    if job.result == "SUCCESS":
        return "+"
    if job.result in CANCELED_RESULTS:
        return "?"
    return "-"


def first_failed_job(item: ZItem) -> str | None:
    for job in item.jobs:
        if job.voting and job.failed:
            return job.name
    return None


@dataclass(slots=True)
class Verdict:
    status: int
    behind_key: str = ""
    behind_job: str = ""


def classify(queue: ZQueue) -> dict[str, Verdict]:
    """Each item's status; BEHIND_FAILURE names the nearest failing item ahead."""
    by_key = {item.key: item for item in queue.items}
    failed = {item.key: first_failed_job(item) for item in queue.items}
    out: dict[str, Verdict] = {}
    for item in queue.items:
        own = failed[item.key]
        if own:
            out[item.key] = Verdict(ci_pb2.ITEM_STATUS_FAILING)
            continue
        ahead, seen = item.item_ahead, {item.key}
        verdict: Verdict | None = None
        while ahead and ahead not in seen and ahead in by_key:
            seen.add(ahead)
            job = failed[ahead]
            if job:
                verdict = Verdict(ci_pb2.ITEM_STATUS_BEHIND_FAILURE, ahead, job)
                break
            ahead = by_key[ahead].item_ahead
        if verdict is None:
            if NEEDED_FAILING in item.failing_reasons or _all_canceled(item):
                verdict = Verdict(ci_pb2.ITEM_STATUS_BEHIND_FAILURE)
            elif not item.jobs:
                verdict = Verdict(ci_pb2.ITEM_STATUS_UNKNOWN)
            elif not any(j.started or j.finished for j in item.jobs):
                verdict = Verdict(ci_pb2.ITEM_STATUS_QUEUED)
            else:
                verdict = Verdict(ci_pb2.ITEM_STATUS_PASSING)
        out[item.key] = verdict
    return out


def _all_canceled(item: ZItem) -> bool:
    """The original's guess: every job canceled/skipped means something ahead failed."""
    return bool(item.jobs) and all((j.result or "") in CANCELED_RESULTS for j in item.jobs)


def progress(item: ZItem) -> float:
    """Done fraction, each job weighted by its estimated duration when Zuul gives one."""
    if not item.jobs:
        return 0.0
    known = [e for e in (j.estimate_ms for j in item.jobs) if e]
    default = sum(known) / len(known) if known else 1.0
    total = done = 0.0
    for job in item.jobs:
        weight = job.estimate_ms or default
        total += weight
        if job.finished:
            done += weight
        elif job.started and job.elapsed_ms is not None and job.estimate_ms:
            done += weight * min(1.0, job.elapsed_ms / job.estimate_ms)
    return done / total if total else 0.0


def eta_ms(item: ZItem, fraction: float, now_ms: float) -> float | None:
    """Zuul's own remaining time, else a linear extrapolation from time in queue."""
    if item.remaining_ms is not None:
        return float(item.remaining_ms)
    if item.enqueue_ms and 0 < fraction < 1:
        spent = max(0.0, now_ms - item.enqueue_ms)
        return spent * (1 - fraction) / fraction
    if fraction >= 1:
        return 0.0
    return None


def build_item(
    item: ZItem,
    pipeline: str,
    queue: ZQueue,
    position: int,
    verdict: Verdict,
    matches: dict[int, Match],
    flt: ci_pb2.Filter,
    keys_to_change: dict[str, str],
    now_ms: float,
) -> ci_pb2.Item:
    ref = next((r for r in item.refs if r.number in matches), item.refs[0])
    match = matches.get(ref.number)
    change = match.change if match else None
    fraction = progress(item)
    out = ci_pb2.Item(
        change=ref.change or item.key,
        number=ref.number,
        patchset=ref.patchset,
        project=ref.project or item.project,
        branch=(change.branch if change else "") or queue.branch,
        subject=change.subject if change else "",
        owner=(change.owner_name if change else "") or ref.owner_name,
        owner_username=(change.owner_username if change else "") or ref.owner_username,
        url=ref.url,
        position=position,
        item_ahead=keys_to_change.get(item.item_ahead or "", item.item_ahead or ""),
        status=verdict.status,  # type: ignore[arg-type]
        behind_change=keys_to_change.get(verdict.behind_key, verdict.behind_key),
        behind_job=verdict.behind_job,
        progress=fraction,
        matched_by=[GROUPS[r] for r in match.reasons if r in GROUPS] if match else [],
        starred=bool(change and change.starred),
        live=item.live,
        job_string="".join(job_char(j) for j in item.jobs),
        pipeline=pipeline,
        queue=queue.name,
        changes=[r.change for r in item.refs if r.change],
        failing_reasons=item.failing_reasons,
        zuul_id=item.key,
    )
    out.own = bool(flt.user) and out.owner_username == flt.user
    if item.enqueue_ms:
        out.enqueue_time.FromMilliseconds(item.enqueue_ms)
    if item.remaining_ms is not None:
        out.remaining.FromMilliseconds(item.remaining_ms)
    eta = eta_ms(item, fraction, now_ms)
    if eta is not None:
        out.eta.FromMilliseconds(int(eta))
    if change and change.current_patchset > ref.patchset > 0:
        out.warning = (
            f"Zuul tests patchset {ref.patchset}, Gerrit's current is {change.current_patchset}"
        )
    for job in item.jobs:
        pj = out.jobs.add(
            name=job.name,
            result=job_result(job),
            raw_result=job.result or "",
            voting=job.voting,
            url=job.url,
        )
        if job.elapsed_ms is not None:
            pj.elapsed.FromMilliseconds(job.elapsed_ms)
        if job.remaining_ms is not None:
            pj.remaining.FromMilliseconds(job.remaining_ms)
        if job.estimate_ms:
            pj.estimated.FromMilliseconds(int(job.estimate_ms))
    return out


# The source's name ("zuul", "gerrit", also the metrics' label) -> the contract's Upstream.
UPSTREAMS = {"zuul": ci_pb2.UPSTREAM_ZUUL, "gerrit": ci_pb2.UPSTREAM_GERRIT}
# A filter group's reason ("owner", "project", ...) -> the contract's FilterGroup.
GROUPS = {
    "owner": ci_pb2.FILTER_GROUP_OWNER,
    "change": ci_pb2.FILTER_GROUP_CHANGE,
    "topic": ci_pb2.FILTER_GROUP_TOPIC,
    "query": ci_pb2.FILTER_GROUP_QUERY,
    "watched": ci_pb2.FILTER_GROUP_WATCHED,
    "starred": ci_pb2.FILTER_GROUP_STARRED,
    "project": ci_pb2.FILTER_GROUP_PROJECT,
}
# The parser's "v2", "v3", "v10" -> the contract's ZuulApiGeneration.
GENERATIONS = {
    "v2": ci_pb2.ZUUL_API_GENERATION_V2,
    "v3": ci_pb2.ZUUL_API_GENERATION_V3,
    "v10": ci_pb2.ZUUL_API_GENERATION_V10,
}


def zuul_message(zuul: ZuulStatus, url: str = "") -> ci_pb2.ZuulStatus:
    out = ci_pb2.ZuulStatus(
        version=zuul.version,
        message=zuul.message,
        event_queues=zuul.event_queues,
        api_generation=GENERATIONS.get(zuul.generation, ci_pb2.ZUUL_API_GENERATION_UNSPECIFIED),
        url=url,
    )
    if zuul.last_reconfigured_ms:
        out.last_reconfigured.FromMilliseconds(zuul.last_reconfigured_ms)
    return out


def health_message(health: SourceHealth, now: float) -> ci_pb2.SourceHealth:
    out = ci_pb2.SourceHealth(
        source=UPSTREAMS.get(health.name, ci_pb2.UPSTREAM_UNSPECIFIED),
        ok=health.ok,
        error=health.error,
        failed_attempts=health.failed_attempts,
        stale=health.stale,
        warning=health.warning,
    )
    if health.last_success is not None:
        out.last_success.CopyFrom(timestamp_from_epoch(health.last_success))
        out.data_age.CopyFrom(duration_from_seconds(now - health.last_success))
    return out


def build_dashboard(
    zuul: ZuulStatus | None,
    matches: dict[int, Match] | None,
    flt: ci_pb2.Filter,
    *,
    watch: str = "",
    health: Iterable[SourceHealth] = (),
    zuul_url: str = "",
    now: float | None = None,
    everything: bool = False,
) -> ci_pb2.Dashboard:
    """The dashboard for ``flt``. ``matches`` None = Gerrit never answered: match on what
    Zuul tells. ``everything`` keeps every item (ListPipelines)."""
    now = time.time() if now is None else now
    dash = ci_pb2.Dashboard(watch=watch, filter_description=filters.describe(flt))
    dash.time.CopyFrom(timestamp_from_epoch(now))
    for h in health:
        dash.sources.append(health_message(h, now))
    dash.stale = any(s.stale for s in dash.sources)
    if zuul is None:
        return dash
    dash.zuul.CopyFrom(zuul_message(zuul, zuul_url))
    if matches is None:
        matches = local_matches(zuul, flt)
    ignored = set(flt.ignored_pipelines)
    for zp in zuul.pipelines:
        if zp.name in ignored:
            continue
        pipeline = ci_pb2.Pipeline(
            name=zp.name, description=zp.description, total_items=zp.total_items
        )
        for zq in zp.queues:
            queue = _queue(zp.name, zq, matches, flt, now * 1000, everything)
            if queue.items or (everything and zq.items):
                pipeline.queues.append(queue)
        if pipeline.queues or everything:
            dash.pipelines.append(pipeline)
            dash.matching_items += sum(len(q.items) for q in pipeline.queues)
    return dash


def _queue(
    pipeline: str,
    zq: ZQueue,
    matches: dict[int, Match],
    flt: ci_pb2.Filter,
    now_ms: float,
    everything: bool,
) -> ci_pb2.Queue:
    queue = ci_pb2.Queue(
        name=zq.name,
        pipeline=pipeline,
        total=len(zq.items),
        dependent=zq.dependent,
        branch=zq.branch,
    )
    wanted = [
        (i, item)
        for i, item in enumerate(zq.items)
        if everything or any(r.number in matches for r in item.refs)
    ]
    if not wanted:
        return queue
    verdicts = classify(zq)
    keys = {item.key: (item.refs[0].change or item.key) for item in zq.items if item.refs}
    for index, item in wanted:
        position = index + 1 if zq.dependent else 0
        queue.items.append(
            build_item(
                item,
                pipeline,
                zq,
                position,
                verdicts[item.key],
                matches,
                flt,
                keys,
                now_ms,
            )
        )
    return queue
