"""Fan-out of events to Watch streams: every subscriber gets every event, in order.

A subscriber that falls more than ``max_backlog`` events behind is cut off (its iterator
raises :class:`Lagged`) rather than slowing everyone else down; the servicer turns that into
ABORTED and the client simply watches again (and gets the current state first).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Lagged(Exception):
    """The subscriber fell too far behind and missed events."""


class _Closed:
    pass


_CLOSED = _Closed()


class Subscription(Generic[T]):
    def __init__(self, max_backlog: int) -> None:
        self.queue: asyncio.Queue[T | _Closed] = asyncio.Queue()
        self.max_backlog = max_backlog
        self.lagged = False

    def push(self, event: T) -> None:
        if self.lagged:
            return
        if self.queue.qsize() >= self.max_backlog:
            self.lagged = True
            self.queue.put_nowait(_CLOSED)
            return
        self.queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            item = await self.queue.get()
            if isinstance(item, _Closed):
                if self.lagged:
                    raise Lagged("watcher fell too far behind; watch again")
                return
            yield item


class Broadcaster(Generic[T]):
    """Publish from anywhere in the event loop; ``subscribe()`` in each Watch RPC."""

    def __init__(self, max_backlog: int = 10_000) -> None:
        self._subs: set[Subscription[T]] = set()
        self.max_backlog = max_backlog

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, event: T) -> None:
        for sub in list(self._subs):
            sub.push(event)

    def close(self) -> None:
        for sub in list(self._subs):
            sub.queue.put_nowait(_CLOSED)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription[T]]:
        """Subscribe BEFORE taking the current-state snapshot so no event falls in between."""
        sub: Subscription[T] = Subscription(self.max_backlog)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
