"""Every background task and thread of a service runs under one supervisor.

A crash is never silent: it is logged with its traceback, counted in
``hearth_task_restarts_total{task}``, and the task is started again after a backoff that
doubles from ``first_backoff`` up to ``max_backoff``. A task that crashed ``failing_after``
times in a row without a stable run in between is *failing*: ``hearth_task_failing{task}``
is 1 and the runtime reports the service NOT_SERVING until the task runs stably again (or
is cancelled). A task that returns normally is done and is not restarted.

Tasks are given as factories (``lambda: self._poll()``), not coroutine objects, because a
coroutine can only run once. The ``task`` label is the task's *family* (``ci-watch``, not
``ci-watch-mine``), so a service with many dynamic tasks keeps a bounded set of series.

``tests/runtime/test_supervision_rule.py`` fails on any ``asyncio.create_task``,
``ensure_future`` or ``threading.Thread`` in product code outside this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from hearth_runtime.logs import kv

log = logging.getLogger("hearth.supervisor")

RESTARTS = Counter(
    "hearth_task_restarts_total",
    "Background tasks that crashed and were started again, by task family.",
    ("task",),
)
FAILING = Gauge(
    "hearth_task_failing",
    "1 while a background task keeps crashing (the service reports NOT_SERVING meanwhile).",
    ("task",),
)

CoroFactory = Callable[[], Coroutine[Any, Any, Any]]


@dataclass
class _Record:
    """One supervised task or thread: how often it crashed and why, last."""

    name: str
    family: str
    consecutive: int = 0
    last_error: str = ""
    failing: bool = False


@dataclass
class Supervisor:
    """Starts, restarts and stops background tasks and threads; knows which are failing."""

    first_backoff: float = 0.5
    max_backoff: float = 30.0
    failing_after: int = 3
    stable_after: float = 30.0
    """A run this long (seconds) without a crash resets the crash count and the backoff."""
    on_health_change: Callable[[], None] | None = None
    """Called (in the event loop's thread when there is one) when the failing set changes."""
    _tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    _threads: dict[str, _SupervisedThread] = field(default_factory=dict)
    _records: dict[str, _Record] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _closed: bool = False

    # ------------------------------------------------------------------ asyncio
    def spawn(
        self,
        factory: CoroFactory,
        name: str,
        *,
        family: str | None = None,
        restart: bool = True,
    ) -> asyncio.Task[Any]:
        """Run ``factory()`` in the background; restart it when it raises (unless not
        ``restart``: then one crash is logged and counted and the task ends).

        A second spawn with a running task's name cancels the old task first."""
        self._loop = asyncio.get_running_loop()
        old = self._tasks.pop(name, None)
        if old is not None and not old.done():
            old.cancel()
        record = self._record(name, family)
        task = self._loop.create_task(self._run(factory, record, restart), name=name)
        self._tasks[name] = task
        task.add_done_callback(functools.partial(self._forget_task, name))
        return task

    def cancel(self, name: str) -> None:
        """Stop a task or thread by name (no error if it is not running)."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        thread = self._threads.pop(name, None)
        if thread is not None:
            thread.stop()
        self._drop(name)

    async def _run(self, factory: CoroFactory, record: _Record, restart: bool) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            started = time.monotonic()
            stable = loop.call_later(self.stable_after, self._stable, record)
            try:
                return await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self._crashed(record, exc, time.monotonic() - started)
                if not restart:
                    return None
            finally:
                stable.cancel()
            await asyncio.sleep(delay)

    def _forget_task(self, name: str, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
            self._drop(name)

    # ------------------------------------------------------------------ threads
    def spawn_thread(
        self,
        target: Callable[[threading.Event], None],
        name: str,
        *,
        family: str | None = None,
        restart: bool = True,
    ) -> threading.Event:
        """Run ``target(stop_event)`` in a daemon thread; when it raises, log, count and call
        it again after the backoff (in the same thread). Returns the stop event the target
        should watch; ``cancel(name)`` sets it."""
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        old = self._threads.pop(name, None)
        if old is not None:
            old.stop()
        record = self._record(name, family)
        thread = _SupervisedThread(self, target, record, restart)
        self._threads[name] = thread
        thread.start()
        return thread.stop_event

    # ------------------------------------------------------------------ health
    def failing(self) -> dict[str, str]:
        """Tasks that keep crashing, with their last error (for health details)."""
        with self._lock:
            return {r.name: r.last_error for r in self._records.values() if r.failing}

    def crashes(self, name: str) -> int:
        """Crashes in a row of task ``name`` (0 when unknown or stable)."""
        with self._lock:
            record = self._records.get(name)
            return record.consecutive if record is not None else 0

    async def close(self) -> None:
        """Cancel every task, stop every thread and wait for the tasks to end."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for thread in list(self._threads.values()):
            thread.stop()
        self._tasks.clear()
        self._threads.clear()

    # ------------------------------------------------------------------ internals
    def _record(self, name: str, family: str | None) -> _Record:
        with self._lock:
            record = _Record(name=name, family=family or name)
            self._records[name] = record
        FAILING.labels(record.family)
        RESTARTS.labels(record.family)
        return record

    def _drop(self, name: str) -> None:
        with self._lock:
            record = self._records.pop(name, None)
        if record is not None and record.failing:
            self._update_family(record.family)
            self._health_changed()

    def _crashed(self, record: _Record, exc: BaseException, ran: float) -> float:
        """Log and count a crash; return how long to wait before the next start."""
        with self._lock:
            if ran >= self.stable_after:
                record.consecutive = 0
            record.consecutive += 1
            record.last_error = f"{type(exc).__name__}: {exc}"[:300]
            became_failing = not record.failing and record.consecutive >= self.failing_after
            record.failing = record.failing or became_failing
            count = record.consecutive
        delay = min(self.max_backoff, self.first_backoff * 2 ** (count - 1))
        RESTARTS.labels(record.family).inc()
        log.error(
            "background task crashed; restarting",
            exc_info=exc,
            extra=kv(task=record.name, crashes_in_a_row=count, retry_in=f"{delay:g}s"),
        )
        if became_failing:
            self._update_family(record.family)
            self._health_changed()
        return delay

    def _stable(self, record: _Record) -> None:
        """A run outlived ``stable_after``: the task is healthy again."""
        with self._lock:
            was_failing = record.failing
            record.consecutive = 0
            record.failing = False
        if was_failing:
            log.info("background task runs stably again", extra=kv(task=record.name))
            self._update_family(record.family)
            self._health_changed()

    def _update_family(self, family: str) -> None:
        with self._lock:
            failing = any(r.failing for r in self._records.values() if r.family == family)
        FAILING.labels(family).set(1 if failing else 0)

    def _health_changed(self) -> None:
        callback = self.on_health_change
        if callback is None or self._closed:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            callback()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback()
        else:
            loop.call_soon_threadsafe(callback)


class _SupervisedThread:
    def __init__(
        self,
        supervisor: Supervisor,
        target: Callable[[threading.Event], None],
        record: _Record,
        restart: bool,
    ) -> None:
        self.supervisor = supervisor
        self.target = target
        self.record = record
        self.restart = restart
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=record.name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def _run(self) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            stable = threading.Timer(
                self.supervisor.stable_after, self.supervisor._stable, (self.record,)
            )
            stable.daemon = True
            stable.start()
            try:
                self.target(self.stop_event)
                return
            except Exception as exc:
                delay = self.supervisor._crashed(self.record, exc, time.monotonic() - started)
                if not self.restart:
                    return
            finally:
                stable.cancel()
            if self.stop_event.wait(delay):
                return
