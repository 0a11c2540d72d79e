"""One PulseAudio server = one pulsectl connection owned by one worker thread.

pulsectl is blocking and not thread-safe, so every call for a server runs in that server's
thread (:meth:`PulseLink.call` hands a function over and awaits its result). Between calls
the thread listens for PulseAudio events (modules, sinks, sink-inputs) and reports them to
the event loop, which is how the reconciler notices a module unloaded by hand. A lost or
unreachable server is retried with exponential backoff; calls meanwhile fail fast with
:class:`PulseUnreachable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import shlex
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import pulsectl

from hearth_runtime.logs import kv
from hearth_runtime.supervisor import Supervisor

log = logging.getLogger("hearth.audio.pulse")

T = TypeVar("T")

_LISTEN_SLICE = 0.05  # how long the thread listens for events before checking for calls
_CONNECT_TIMEOUT = 3.0


class PulseUnreachable(Exception):
    """The server is not connected (yet); the message says why."""


def parse_args(argument: str | None) -> dict[str, str]:
    """Module arguments ``a=1 b="x y"`` as a dict (what module_list() reports)."""
    out: dict[str, str] = {}
    try:
        words = shlex.split(argument or "")
    except ValueError:
        words = (argument or "").split()
    for word in words:
        key, sep, value = word.partition("=")
        if sep:
            out[key] = value
    return out


def probe_server(server: str, timeout: float) -> None:
    """Raise OSError unless ``server`` (tcp:host:port or unix:/path) accepts connections."""
    if server.startswith("unix:"):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(server[5:])
        return
    rest = server.removeprefix("tcp:")
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, "4713"
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
        pass


def format_args(args: dict[str, str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in args.items())


class PulseLink:
    """A self-healing connection to one PulseAudio server."""

    def __init__(
        self,
        server: str,
        label: str,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[], None],
        on_state: Callable[[bool, str], None],
        retry_max: float = 30.0,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.server = server
        self.label = label
        self.connected = False
        self.error = "not connected yet"
        self.last_contact = 0.0
        self._loop = loop
        self._on_event = on_event
        self._on_state = on_state
        self._retry_max = retry_max
        self._jobs: queue.SimpleQueue[tuple[Callable[[pulsectl.Pulse], Any], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._supervisor = supervisor if supervisor is not None else Supervisor()
        self._name = f"pulse-{label}"

    def start(self) -> PulseLink:
        """Run the link's thread under the supervisor (a crash outside the connection
        handling is logged, counted in hearth_task_restarts_total and restarted)."""
        self._stop = self._supervisor.spawn_thread(self._run, self._name, family="audio-pulse")
        return self

    def close(self) -> None:
        self._supervisor.cancel(self._name)
        self._stop.set()
        self._wake.set()

    def retry_now(self) -> None:
        """Skip the current backoff wait (e.g. after the zone's address was changed)."""
        self._wake.set()

    async def call(self, fn: Callable[[pulsectl.Pulse], T], deadline: float = 10.0) -> T:
        """Run ``fn(pulse)`` in this server's thread and return its result."""
        if not self.connected:
            raise PulseUnreachable(self.error)
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return await asyncio.wait_for(asyncio.wrap_future(fut), deadline)

    # ------------------------------------------------------------------ thread side

    def _notify(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(fn, *args)

    def _set_state(self, connected: bool, error: str) -> None:
        changed = connected != self.connected or error != self.error
        self.connected, self.error = connected, error
        if connected:
            self.last_contact = time.time()
        if changed:
            self._notify(self._on_state, connected, error)

    def _run(self, stop: threading.Event) -> None:
        self._stop = stop  # cancel(name) and close() set it
        backoff = 0.5
        while not self._stop.is_set():
            pulse = self._connect()
            if pulse is None:
                self._fail_jobs()
                self._wake.wait(backoff)
                self._wake.clear()
                backoff = min(backoff * 2, self._retry_max)
                continue
            backoff = 0.5
            try:
                self._serve(pulse)
            except Exception as exc:  # disconnected or broken: reconnect
                self._set_state(False, f"connection lost: {exc or type(exc).__name__}")
                log.warning("PulseAudio connection lost", extra=kv(server=self.server, err=exc))
            finally:
                with contextlib.suppress(Exception):
                    pulse.close()
        self._fail_jobs()

    def _connect(self) -> pulsectl.Pulse | None:
        try:
            # pulsectl's connect(timeout=...) always waits the whole timeout, and without
            # one it can hang on a silent host: probe the socket first, then connect.
            probe_server(self.server, _CONNECT_TIMEOUT)
            pulse = pulsectl.Pulse(f"hearth-audio-{self.label}", server=self.server, connect=False)
            pulse.connect(autospawn=False, wait=False)
            pulse.event_mask_set("module", "sink", "sink_input", "server")
            pulse.event_callback_set(self._event)
        except Exception as exc:
            error = f"cannot connect to {self.server}: {exc or type(exc).__name__}"
            if error != self.error:
                log.warning("PulseAudio unreachable", extra=kv(server=self.server, err=exc))
            self._set_state(False, error)
            return None
        log.info("PulseAudio connected", extra=kv(server=self.server))
        self._set_state(True, "")
        self._notify(self._on_event)
        return pulse

    def _event(self, event: Any) -> None:
        self._pending_event = True

    def _serve(self, pulse: pulsectl.Pulse) -> None:
        while not self._stop.is_set():
            while True:
                try:
                    fn, fut = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(fn(pulse))
                except (pulsectl.PulseDisconnected, pulsectl.PulseError) as exc:
                    fut.set_exception(exc)
                    if isinstance(exc, pulsectl.PulseDisconnected):
                        raise
                except Exception as exc:
                    fut.set_exception(exc)
                self.last_contact = time.time()
            self._pending_event = False
            pulse.event_listen(timeout=_LISTEN_SLICE)
            if self._pending_event:
                self.last_contact = time.time()
                self._notify(self._on_event)

    _pending_event = False

    def _fail_jobs(self) -> None:
        while True:
            try:
                _, fut = self._jobs.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(PulseUnreachable(self.error))
