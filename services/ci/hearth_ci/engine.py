"""The polling engine: one Zuul poller for everyone, one Gerrit query per watch refresh.

Zuul is polled at the shortest refresh interval any watch asks for (``idle_poll_seconds``
with no watch); each watch asks Gerrit ONE request per refresh (all its filter groups) and
rebuilds its dashboard whenever either source brings new data. Failures back off with
jitter; the last good data stays, marked stale; health follows Zuul's reachability.

Every loop runs under the runtime's supervisor (a crash is logged, counted, restarted; one
that keeps crashing makes the service NOT_SERVING). Inline filters (a reader's dashboard
for a filter, not a stored watch) run Gerrit queries with the service's credentials, so
they are shared and capped: one cached query per distinct filter for the refresh interval,
one poll loop per distinct filter however many streams follow it, at most
``max_inline_queries`` distinct ones and ``max_inline_queries_per_caller`` per caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from hearth.ci.v1 import ci_pb2
from hearth_ci import metrics
from hearth_ci.config import CiConfig
from hearth_ci.dashboard import Match, build_dashboard, gerrit_matches
from hearth_ci.events import diff
from hearth_ci.sources import (
    GerritClient,
    SourceError,
    SourceHealth,
    ZuulClient,
    redact_url,
    zuul_status_url,
)
from hearth_runtime.broadcast import Broadcaster
from hearth_runtime.errors import ResourceExhausted
from hearth_runtime.logs import kv
from hearth_runtime.supervisor import Supervisor
from hearth_runtime.text import neutral
from hearth_runtime.timeconv import duration_from_seconds, seconds_of

log = logging.getLogger("hearth.ci")

# The watched-items metric's status label: the ItemStatus name without its prefix
# (PASSING, FAILING, ...), as before the prefix existed, so dashboards and alerts hold.
STATUS_NAMES = {
    v: ci_pb2.ItemStatus.Name(v).removeprefix("ITEM_STATUS_")
    for v in ci_pb2.ItemStatus.values()
    if v != ci_pb2.ITEM_STATUS_UNSPECIFIED
}


@dataclass(eq=False)
class WatchState:
    """A watch being polled: its last Gerrit matches and dashboard, and its subscribers."""

    watch: ci_pb2.Watch
    label: str  # metrics label: the watch id, or "inline"
    matches: dict[int, Match] | None = None
    dashboard: ci_pb2.Dashboard | None = None
    broadcaster: Broadcaster[ci_pb2.DashboardEvent] = field(default_factory=Broadcaster)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: str = ""  # the supervisor's name for its loop
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    inline: InlineQuery | None = None  # set for the shared loop of an inline filter

    @property
    def interval(self) -> float:
        return seconds_of(self.watch.refresh_interval)


@dataclass(eq=False)
class InlineQuery:
    """One distinct inline filter: its cached Gerrit answer, shared by every caller."""

    key: bytes
    filter: ci_pb2.Filter
    owner: str  # the principal whose call created it (counted against that caller's cap)
    touched: float  # monotonic: created or last queried
    matches: dict[int, Match] | None = None
    fetched: float | None = None  # monotonic time of the last Gerrit query
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    subscribers: int = 0
    state: WatchState | None = None  # the shared poll loop while streams follow it


class Engine:
    def __init__(
        self,
        config: CiConfig,
        on_zuul_health: Callable[[bool], Awaitable[None]] | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.config = config
        self.on_zuul_health = on_zuul_health
        self.supervisor = supervisor if supervisor is not None else Supervisor()
        self.session: aiohttp.ClientSession | None = None
        self.zuul: ZuulClient | None = None
        self.gerrit: GerritClient | None = None
        self.zuul_url = zuul_status_url(config.zuul_url, config.zuul_tenant)
        self.zuul_url_shown = redact_url(self.zuul_url)  # what readers and logs see
        self.watches: dict[str, WatchState] = {}
        self.inline: dict[bytes, InlineQuery] = {}
        self._inline_seq = 0
        self._zuul_wake = asyncio.Event()
        self._first_poll = asyncio.Event()
        self._polled = asyncio.Event()  # replaced after every Zuul poll
        self._zuul_task = ""
        self._zuul_serving: bool | None = None
        self._logged: dict[str, tuple[str, str]] = {}  # source -> (error, warning) logged
        self._unconfigured = {
            name: SourceHealth(name, error=f"not configured (set HEARTH_CI_{name.upper()}_URL)")
            for name in ("zuul", "gerrit")
        }

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        timeout = self.config.http_timeout_seconds
        max_bytes = int(self.config.max_response_mib * (1 << 20))
        if self.config.zuul_url:
            self.zuul = ZuulClient(self.session, self.zuul_url, timeout, max_bytes)
            self._tune(self.zuul.health)
            zuul = self.zuul
            metrics.DATA_AGE.labels("zuul").set_function(lambda: _age(zuul.health))
            self._zuul_task = "ci-zuul-poll"
            self.supervisor.spawn(self._zuul_loop, self._zuul_task, family="ci-zuul-poll")
        else:
            self._first_poll.set()
        if self.config.gerrit_url:
            self.gerrit = GerritClient(
                self.session,
                self.config.gerrit_url,
                self.config.gerrit_user,
                self.config.gerrit_password,
                timeout,
                max_bytes,
            )
            self._tune(self.gerrit.health)
            gerrit = self.gerrit
            metrics.DATA_AGE.labels("gerrit").set_function(lambda: _age(gerrit.health))

    def _tune(self, health: SourceHealth) -> None:
        health.backoff_base = self.config.backoff_base_seconds
        health.backoff_max = self.config.backoff_max_seconds

    def _states(self) -> list[WatchState]:
        inline = [q.state for q in self.inline.values() if q.state is not None]
        return [*self.watches.values(), *inline]

    async def stop(self) -> None:
        names = [s.task for s in self._states() if s.task]
        if self._zuul_task:
            names.append(self._zuul_task)
        for name in names:
            self.supervisor.cancel(name)
        await asyncio.sleep(0)  # let the cancelled loops unwind before the session closes
        for state in self._states():
            state.broadcaster.close()
        if self.session:
            await self.session.close()

    @property
    def healths(self) -> list[SourceHealth]:
        return [
            self.zuul.health if self.zuul else self._unconfigured["zuul"],
            self.gerrit.health if self.gerrit else self._unconfigured["gerrit"],
        ]

    # ------------------------------------------------------------------ Zuul
    def _zuul_interval(self) -> float:
        intervals = [s.interval for s in self._states()]
        return min(intervals) if intervals else self.config.idle_poll_seconds

    async def _zuul_loop(self) -> None:
        assert self.zuul is not None
        while True:
            self._zuul_wake.clear()  # a wake-up during the fetch triggers the next one
            started = time.perf_counter()
            new = await self.zuul.fetch()
            metrics.POLL_SECONDS.labels("zuul").observe(time.perf_counter() - started)
            health = self.zuul.health
            if not health.ok:
                metrics.POLL_ERRORS.labels("zuul").inc()
            self._log_change(health, url=self.zuul_url_shown)
            await self._set_zuul_serving(health.ok)
            if new and self.zuul.status:
                for pipeline in self.zuul.status.pipelines:
                    metrics.QUEUE_ITEMS.labels(pipeline.name).set(pipeline.total_items)
                for queue, length in self.zuul.status.event_queues.items():
                    metrics.EVENT_QUEUE.labels(queue).set(length)
            self._first_poll.set()
            self._polled.set()
            self._polled = asyncio.Event()
            for state in self._states():
                state.wake.set()  # rebuild with the new data (or the new stale marking)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._zuul_wake.wait(), health.retry_delay(self._zuul_interval())
                )

    async def _set_zuul_serving(self, ok: bool) -> None:
        if ok == self._zuul_serving:
            return
        was, self._zuul_serving = self._zuul_serving, ok
        if not ok:
            log.warning("Zuul unreachable: serving stale data", extra=kv(url=self.zuul_url_shown))
        elif was is not None:
            log.info("Zuul reachable again", extra=kv(url=self.zuul_url_shown))
        if self.on_zuul_health:
            await self.on_zuul_health(ok)

    async def fresh_zuul(self) -> None:
        """On-demand reads (inline filters, ListPipelines) get data no older than the
        minimum refresh interval even while no watch makes the poller run that often."""
        await self.wait_first_poll()
        if self.zuul is None or not self.zuul.health.ok:
            return  # failing: the backoff decides, the last good data is served meanwhile
        age = self.zuul.health.data_age()
        if age is not None and age <= self.config.min_refresh_seconds:
            return
        polled = self._polled
        self._zuul_wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(polled.wait(), self.config.http_timeout_seconds + 1)

    def _log_change(self, health: SourceHealth, **fields: Any) -> None:
        """Log a source's error or skipped parts once per change (not once per poll): a
        broken upstream polled every few seconds must not flood the log."""
        seen = (health.error, health.warning)
        if self._logged.get(health.name, ("", "")) == seen:
            return
        self._logged[health.name] = seen
        name = health.name.capitalize()
        if health.error:
            log.warning(
                f"{name} poll failed",
                extra=kv(**fields, error=health.error, attempts=health.failed_attempts),
            )
        elif health.warning:
            log.warning(
                f"{name} answer had malformed parts", extra=kv(**fields, warning=health.warning)
            )
        else:
            log.info(f"{name} answers normally again", extra=kv(**fields))

    async def wait_first_poll(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_poll.wait(), self.config.http_timeout_seconds + 1)

    # ------------------------------------------------------------------ Gerrit
    async def query_gerrit(self, flt: ci_pb2.Filter) -> dict[int, Match] | None:
        """The filter's matches from ONE Gerrit request; None when Gerrit cannot answer."""
        if self.gerrit is None:
            return None
        started = time.perf_counter()
        try:
            return await gerrit_matches(self.gerrit, flt)
        except SourceError:
            metrics.POLL_ERRORS.labels("gerrit").inc()
            return None
        finally:
            metrics.POLL_SECONDS.labels("gerrit").observe(time.perf_counter() - started)
            self._log_change(self.gerrit.health)

    # ------------------------------------------------------------------ inline filters
    def admit_inline(self, flt: ci_pb2.Filter, principal: str) -> InlineQuery:
        """The shared entry of ``flt``: an existing one (free: no new upstream query), or a
        new one within the caps (RESOURCE_EXHAUSTED beyond them)."""
        now = time.monotonic()
        self._prune_inline(now)
        key = flt.SerializeToString(deterministic=True)
        entry = self.inline.get(key)
        if entry is not None:
            return entry
        cap = self.config.max_inline_queries
        if len(self.inline) >= cap:
            metrics.INLINE_REFUSED.labels("total").inc()
            raise ResourceExhausted(
                f"{cap} distinct inline dashboard queries are running already "
                "(setting max_inline_queries); create a watch, or retry in "
                f"{self.config.default_refresh_seconds:g} s"
            )
        per_caller = self.config.max_inline_queries_per_caller
        held = sum(1 for e in self.inline.values() if e.owner == principal)
        if held >= per_caller:
            metrics.INLINE_REFUSED.labels("caller").inc()
            raise ResourceExhausted(
                f"caller {neutral(principal, 80)!r} holds {held} distinct inline dashboard "
                f"queries, the most allowed (setting max_inline_queries_per_caller); create a "
                f"watch, or retry in {self.config.default_refresh_seconds:g} s"
            )
        entry = InlineQuery(key=key, filter=flt, owner=principal, touched=now)
        self.inline[key] = entry
        metrics.INLINE_QUERIES.set(len(self.inline))
        return entry

    def _prune_inline(self, now: float) -> None:
        ttl = self.config.default_refresh_seconds
        for key, entry in list(self.inline.items()):
            if entry.subscribers or entry.lock.locked() or now - entry.touched < ttl:
                continue
            del self.inline[key]
        metrics.INLINE_QUERIES.set(len(self.inline))

    async def inline_matches(
        self, entry: InlineQuery, slack: float = 1.0
    ) -> dict[int, Match] | None:
        """The entry's matches, asking Gerrit at most once per refresh interval however
        many callers ask (concurrent callers wait for the one query in flight). ``slack``
        < 1 lets the shared poll loop refresh on time rather than one interval late."""
        async with entry.lock:
            fetched = entry.fetched
            if fetched is not None and time.monotonic() - fetched < self._inline_ttl() * slack:
                return entry.matches
            matches = await self.query_gerrit(entry.filter)
            entry.fetched = entry.touched = time.monotonic()
            if matches is not None:
                entry.matches = matches
            return entry.matches

    def _inline_ttl(self) -> float:
        # A failing Gerrit is asked again no sooner than its backoff says.
        if self.gerrit is not None and not self.gerrit.health.ok:
            return self.gerrit.health.retry_delay(self.config.default_refresh_seconds)
        return self.config.default_refresh_seconds

    # ------------------------------------------------------------------ dashboards
    def build(self, flt: ci_pb2.Filter, matches: dict[int, Match] | None, watch: str = "") -> Any:
        return build_dashboard(
            self.zuul.status if self.zuul else None,
            matches,
            flt,
            watch=watch,
            health=self.healths,
            zuul_url=self.zuul_url_shown,
        )

    async def dashboard_for_filter(
        self, flt: ci_pb2.Filter, principal: str = "anonymous"
    ) -> ci_pb2.Dashboard:
        entry = self.admit_inline(flt, principal)
        await self.fresh_zuul()
        return self.build(flt, await self.inline_matches(entry))

    async def dashboard_for_watch(self, name: str) -> ci_pb2.Dashboard:
        state = self.watches[name]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.ready.wait(), self.config.http_timeout_seconds * 2 + 1)
        if state.dashboard is None:
            return self.build(state.watch.filter, state.matches, name)
        return state.dashboard

    def pipelines(self) -> ci_pb2.ListPipelinesResponse:
        dash = build_dashboard(
            self.zuul.status if self.zuul else None,
            {},
            ci_pb2.Filter(),
            health=self.healths,
            zuul_url=self.zuul_url_shown,
            everything=True,
        )
        return ci_pb2.ListPipelinesResponse(pipelines=dash.pipelines, zuul=dash.zuul)

    # ------------------------------------------------------------------ watches
    def add_watch(self, watch: ci_pb2.Watch) -> WatchState:
        old = self.watches.pop(watch.name, None)
        state = WatchState(watch=watch, label=watch.name.removeprefix("watches/"))
        if old is not None:
            state.broadcaster = old.broadcaster  # streams follow the updated watch
        self.watches[watch.name] = state
        # Same name: the supervisor cancels the old loop before starting the new one.
        state.task = f"ci-{watch.name}"
        self.supervisor.spawn(lambda: self._watch_loop(state), state.task, family="ci-watch")
        self._zuul_wake.set()  # a shorter interval may apply now
        return state

    def remove_watch(self, name: str) -> None:
        state = self.watches.pop(name, None)
        if state is not None:
            self._cancel(state)
            state.broadcaster.close()
            for status in STATUS_NAMES.values():
                with contextlib.suppress(KeyError):
                    metrics.WATCHED_ITEMS.remove(state.label, status)

    def subscribe_inline(self, flt: ci_pb2.Filter, principal: str) -> WatchState:
        """The shared poll loop of ``flt`` (started by its first follower); pair with
        :meth:`unsubscribe_inline`."""
        entry = self.admit_inline(flt, principal)
        entry.subscribers += 1
        if entry.state is None:
            watch = ci_pb2.Watch(filter=flt)
            watch.refresh_interval.CopyFrom(
                duration_from_seconds(self.config.default_refresh_seconds)
            )
            self._inline_seq += 1
            state = WatchState(watch=watch, label="inline", inline=entry)
            state.task = f"ci-inline-{self._inline_seq}"
            entry.state = state
            self.supervisor.spawn(
                lambda: self._watch_loop(state), state.task, family="ci-inline-watch"
            )
            self._zuul_wake.set()
        return entry.state

    def unsubscribe_inline(self, state: WatchState) -> None:
        entry = state.inline
        if entry is None:
            return
        entry.subscribers -= 1
        if entry.subscribers <= 0 and entry.state is state:
            entry.subscribers = 0
            entry.state = None
            entry.touched = time.monotonic()  # the cached answer stays for the interval
            self._cancel(state)
            state.broadcaster.close()

    def _cancel(self, state: WatchState) -> None:
        if not state.task:
            return
        current = asyncio.current_task()
        if current is not None and current.get_name() == state.task:
            return  # never cancel the loop from inside itself
        self.supervisor.cancel(state.task)

    async def _watch_loop(self, state: WatchState) -> None:
        await self.wait_first_poll()
        next_gerrit = 0.0
        while True:
            now = time.monotonic()
            delay = state.interval
            if now >= next_gerrit and self.gerrit is not None:
                if state.inline is not None:
                    matches = await self.inline_matches(state.inline, slack=0.9)
                else:
                    matches = await self.query_gerrit(state.watch.filter)
                if matches is not None:
                    state.matches = matches
                delay = self.gerrit.health.retry_delay(state.interval)
                next_gerrit = time.monotonic() + delay
            self._publish(state)
            state.ready.set()
            state.wake.clear()
            wait = max(0.05, next_gerrit - time.monotonic()) if self.gerrit else delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wake.wait(), wait)

    def _publish(self, state: WatchState) -> None:
        dash = self.build(state.watch.filter, state.matches, state.watch.name)
        old = state.dashboard
        state.dashboard = dash
        if state.label != "inline":
            counts = dict.fromkeys(STATUS_NAMES.values(), 0)
            for pipeline in dash.pipelines:
                for queue in pipeline.queues:
                    for item in queue.items:
                        counts[STATUS_NAMES.get(item.status, "UNKNOWN")] += 1
            for status, count in counts.items():
                metrics.WATCHED_ITEMS.labels(state.label, status).set(count)
        if old is not None:
            for event in diff(old, dash):
                state.broadcaster.publish(event)
        snapshot = ci_pb2.DashboardEvent(kind=ci_pb2.DashboardEvent.KIND_SNAPSHOT, dashboard=dash)
        snapshot.time.CopyFrom(dash.time)
        state.broadcaster.publish(snapshot)


def _age(health: SourceHealth) -> float:
    age = health.data_age()
    return math.nan if age is None else age
