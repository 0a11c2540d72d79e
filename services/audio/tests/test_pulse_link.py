"""PulseLink against a server that never speaks PulseAudio: reported, retried with backoff."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from hearth_audio.pulse import PulseLink, PulseUnreachable
from hearth_testing import wait_for_async


@pytest.fixture
def mute_server() -> Iterator[tuple[str, list[float]]]:
    """A loopback TCP port that accepts and hangs up at once; the accept times."""
    accepted: list[float] = []
    stop = threading.Event()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        srv.settimeout(0.05)

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    continue
                accepted.append(time.monotonic())
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield f"tcp:127.0.0.1:{srv.getsockname()[1]}", accepted
        stop.set()
        thread.join(2)


def attempts(accepted: list[float]) -> list[float]:
    """Start times of connection attempts (a probe and pulsectl's connect come together)."""
    starts: list[float] = []
    last = float("-inf")
    for t in accepted:
        if t - last > 0.25:
            starts.append(t)
        last = t
    return starts


async def test_unreachable_server_reported_and_retried_with_backoff(
    mute_server: tuple[str, list[float]],
) -> None:
    server, accepted = mute_server
    states: list[tuple[bool, str]] = []
    link = PulseLink(
        server,
        "test",
        asyncio.get_running_loop(),
        on_event=lambda: None,
        on_state=lambda ok, error: states.append((ok, error)),
        retry_max=2.0,
    ).start()
    try:

        async def five_attempts() -> bool:
            return len(attempts(accepted)) >= 5

        await wait_for_async("five connection attempts", five_attempts, within=20)
        assert states and states[0][0] is False
        assert f"cannot connect to {server}" in states[0][1], states
        assert all(not ok for ok, _ in states)
        with pytest.raises(PulseUnreachable):
            await link.call(lambda pulse: None)
        # Waits of 0.5, 1 and 2 s between attempts, then no longer than retry_max.
        starts = attempts(accepted)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert gaps[0] >= 0.45 and gaps[1] >= 0.95 and gaps[2] >= 1.95, gaps
        assert gaps[1] > 1.5 * gaps[0] and gaps[2] > 1.5 * gaps[1], gaps
        assert 1.95 <= gaps[3] < 3.5, gaps  # capped at retry_max, not doubled to 4 s

        # retry_now skips the wait (used when a zone's address changes): called 0.3 s
        # into a 2 s wait, the next attempt comes at once, not 1.7 s later.
        async def into_the_wait() -> bool:
            return time.monotonic() - accepted[-1] > 0.3

        await wait_for_async("the link waiting", into_the_wait, within=5)
        before = len(attempts(accepted))
        link.retry_now()

        async def one_more() -> bool:
            return len(attempts(accepted)) > before

        await wait_for_async("an attempt right after retry_now", one_more, within=1.0)
    finally:
        link.close()
