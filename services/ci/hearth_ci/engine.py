"""The polling engine: one Zuul poller for everyone, one Gerrit query per watch refresh.

Zuul is polled at the shortest refresh interval any watch asks for (``idle_poll_seconds``
with no watch); each watch asks Gerrit ONE request per refresh (all its filter groups) and
rebuilds its dashboard whenever either source brings new data. Failures back off with
jitter; the last good data stays, marked stale; health follows Zuul's reachability.
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
from hearth_ci import filters, metrics
from hearth_ci.config import CiConfig
from hearth_ci.dashboard import Match, build_dashboard, combine
from hearth_ci.events import diff
from hearth_ci.sources import GerritClient, SourceError, SourceHealth, ZuulClient, zuul_status_url
from hearth_runtime.broadcast import Broadcaster
from hearth_runtime.logs import kv

log = logging.getLogger("hearth.ci")

STATUS_NAMES = [
    ci_pb2.ItemStatus.Name(v)
    for v in ci_pb2.ItemStatus.values()
    if v != ci_pb2.ITEM_STATUS_UNSPECIFIED
]


@dataclass(eq=False)
class WatchState:
    """A watch being polled: its last Gerrit matches and dashboard, and its subscribers."""

    watch: ci_pb2.Watch
    label: str  # metrics label: the watch id, or "inline"
    matches: dict[int, Match] | None = None
    dashboard: ci_pb2.Dashboard | None = None
    broadcaster: Broadcaster[ci_pb2.DashboardEvent] = field(default_factory=Broadcaster)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[Any] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def interval(self) -> float:
        return self.watch.refresh_interval.ToNanoseconds() / 1e9


class Engine:
    def __init__(
        self,
        config: CiConfig,
        on_zuul_health: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.on_zuul_health = on_zuul_health
        self.session: aiohttp.ClientSession | None = None
        self.zuul: ZuulClient | None = None
        self.gerrit: GerritClient | None = None
        self.zuul_url = zuul_status_url(config.zuul_url, config.zuul_tenant)
        self.watches: dict[str, WatchState] = {}
        self._inline: set[WatchState] = set()
        self._zuul_wake = asyncio.Event()
        self._first_poll = asyncio.Event()
        self._polled = asyncio.Event()  # replaced after every Zuul poll
        self._zuul_task: asyncio.Task[Any] | None = None
        self._zuul_serving: bool | None = None
        self._unconfigured = {
            name: SourceHealth(name, error=f"not configured (set HEARTH_CI_{name.upper()}_URL)")
            for name in ("zuul", "gerrit")
        }

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        timeout = self.config.http_timeout_seconds
        if self.config.zuul_url:
            self.zuul = ZuulClient(self.session, self.zuul_url, timeout)
            self._tune(self.zuul.health)
            zuul = self.zuul
            metrics.DATA_AGE.labels("zuul").set_function(lambda: _age(zuul.health))
            self._zuul_task = asyncio.create_task(self._zuul_loop(), name="ci-zuul-poll")
        else:
            self._first_poll.set()
        if self.config.gerrit_url:
            self.gerrit = GerritClient(
                self.session,
                self.config.gerrit_url,
                self.config.gerrit_user,
                self.config.gerrit_password,
                timeout,
            )
            self._tune(self.gerrit.health)
            gerrit = self.gerrit
            metrics.DATA_AGE.labels("gerrit").set_function(lambda: _age(gerrit.health))

    def _tune(self, health: SourceHealth) -> None:
        health.backoff_base = self.config.backoff_base_seconds
        health.backoff_max = self.config.backoff_max_seconds

    async def stop(self) -> None:
        tasks = [s.task for s in [*self.watches.values(), *self._inline] if s.task]
        if self._zuul_task:
            tasks.append(self._zuul_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for state in [*self.watches.values(), *self._inline]:
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
        intervals = [s.interval for s in [*self.watches.values(), *self._inline]]
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
                log.warning(
                    "Zuul poll failed",
                    extra=kv(
                        url=self.zuul.url, error=health.error, attempts=health.failed_attempts
                    ),
                )
            await self._set_zuul_serving(health.ok)
            if new and self.zuul.status:
                for pipeline in self.zuul.status.pipelines:
                    metrics.QUEUE_ITEMS.labels(pipeline.name).set(pipeline.total_items)
                for queue, length in self.zuul.status.event_queues.items():
                    metrics.EVENT_QUEUE.labels(queue).set(length)
            self._first_poll.set()
            self._polled.set()
            self._polled = asyncio.Event()
            for state in [*self.watches.values(), *self._inline]:
                state.wake.set()  # rebuild with the new data (or the new stale marking)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._zuul_wake.wait(), health.retry_delay(self._zuul_interval())
                )

    async def _set_zuul_serving(self, ok: bool) -> None:
        if ok == self._zuul_serving:
            return
        self._zuul_serving = ok
        if not ok:
            log.warning("Zuul unreachable: serving stale data", extra=kv(url=self.zuul_url))
        elif self._zuul_serving is not None:
            log.info("Zuul reachable again", extra=kv(url=self.zuul_url))
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

    async def wait_first_poll(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_poll.wait(), self.config.http_timeout_seconds + 1)

    # ------------------------------------------------------------------ Gerrit
    async def query_gerrit(self, flt: ci_pb2.Filter) -> dict[int, Match] | None:
        """The filter's matches from ONE Gerrit request; None when Gerrit cannot answer."""
        if self.gerrit is None:
            return None
        groups = filters.effective_groups(flt)
        started = time.perf_counter()
        try:
            results = await self.gerrit.query(filters.gerrit_queries(flt))
        except SourceError as exc:
            metrics.POLL_ERRORS.labels("gerrit").inc()
            log.warning("Gerrit query failed", extra=kv(error=str(exc)))
            return None
        finally:
            metrics.POLL_SECONDS.labels("gerrit").observe(time.perf_counter() - started)
        return combine(groups, results, flt.operator)

    # ------------------------------------------------------------------ dashboards
    def build(self, flt: ci_pb2.Filter, matches: dict[int, Match] | None, watch: str = "") -> Any:
        return build_dashboard(
            self.zuul.status if self.zuul else None,
            matches,
            flt,
            watch=watch,
            health=self.healths,
            zuul_url=self.zuul_url,
        )

    async def dashboard_for_filter(self, flt: ci_pb2.Filter) -> ci_pb2.Dashboard:
        await self.fresh_zuul()
        return self.build(flt, await self.query_gerrit(flt))

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
            zuul_url=self.zuul_url,
            everything=True,
        )
        return ci_pb2.ListPipelinesResponse(pipelines=dash.pipelines, zuul=dash.zuul)

    # ------------------------------------------------------------------ watches
    def add_watch(self, watch: ci_pb2.Watch) -> WatchState:
        old = self.watches.pop(watch.name, None)
        state = WatchState(watch=watch, label=watch.name.removeprefix("watches/"))
        if old is not None:
            state.broadcaster = old.broadcaster  # streams follow the updated watch
            self._cancel(old)
        self.watches[watch.name] = state
        state.task = asyncio.create_task(self._watch_loop(state), name=f"ci-{watch.name}")
        self._zuul_wake.set()  # a shorter interval may apply now
        return state

    def remove_watch(self, name: str) -> None:
        state = self.watches.pop(name, None)
        if state is not None:
            self._cancel(state)
            state.broadcaster.close()
            for status in STATUS_NAMES:
                with contextlib.suppress(KeyError):
                    metrics.WATCHED_ITEMS.remove(state.label, status)

    def add_inline(self, flt: ci_pb2.Filter) -> WatchState:
        watch = ci_pb2.Watch(filter=flt)
        watch.refresh_interval.FromNanoseconds(int(self.config.default_refresh_seconds * 1e9))
        state = WatchState(watch=watch, label="inline")
        self._inline.add(state)
        state.task = asyncio.create_task(self._watch_loop(state), name="ci-inline-watch")
        self._zuul_wake.set()
        return state

    def remove_inline(self, state: WatchState) -> None:
        self._inline.discard(state)
        self._cancel(state)

    @staticmethod
    def _cancel(state: WatchState) -> None:
        if state.task and state.task is not asyncio.current_task():
            state.task.cancel()

    async def _watch_loop(self, state: WatchState) -> None:
        await self.wait_first_poll()
        next_gerrit = 0.0
        while True:
            now = time.monotonic()
            delay = state.interval
            if now >= next_gerrit and self.gerrit is not None:
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
            counts = dict.fromkeys(STATUS_NAMES, 0)
            for pipeline in dash.pipelines:
                for queue in pipeline.queues:
                    for item in queue.items:
                        counts[ci_pb2.ItemStatus.Name(item.status)] += 1
            for status, count in counts.items():
                metrics.WATCHED_ITEMS.labels(state.label, status).set(count)
        if old is not None:
            for event in diff(old, dash):
                state.broadcaster.publish(event)
        snapshot = ci_pb2.DashboardEvent(kind=ci_pb2.DashboardEvent.SNAPSHOT, dashboard=dash)
        snapshot.time.CopyFrom(dash.time)
        state.broadcaster.publish(snapshot)


def _age(health: SourceHealth) -> float:
    age = health.data_age()
    return math.nan if age is None else age
