"""Start a hearth service as a real process (optionally inside a lab host) and stop it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_SERVING = re.compile(r" serving grpc=(\S+) metrics=(\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def console_script(name: str) -> str:
    """Path of an installed console script (hearth-wake, ...) beside this interpreter."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed (run `make install`)")
    return found


class ServiceProcess:
    """``hearth-<service>`` in a subprocess; ``start()`` waits for its "serving" log line.

    ``prefix`` runs it through another command (e.g. ``["ip", "netns", "exec", ns]``).
    """

    def __init__(
        self,
        service: str,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        prefix: Sequence[str] = (),
        log_path: Path | None = None,
    ) -> None:
        self.service = service
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.argv = [*prefix, console_script(f"hearth-{service}"), *args]
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.grpc_address = ""
        self.metrics_address = ""
        self._serving = threading.Event()
        self._reader: threading.Thread | None = None
        self._log: IO[str] | None = None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        if self.log_path:
            self._log = self.log_path.open("a")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._serving.wait(0.05):
                return self
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise RuntimeError(
                    f"hearth-{self.service} exited with {self.proc.returncode}:\n{self.output}"
                )
        self.stop()
        raise TimeoutError(f"hearth-{self.service} did not start in {timeout} s:\n{self.output}")

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self._log:
                self._log.write(line + "\n")
                self._log.flush()
            match = _SERVING.search(line)
            if match:
                self.grpc_address, self.metrics_address = match.group(1), match.group(2)
                self._serving.set()

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        """Wait until a log line matches ``pattern`` (regex); return it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            lines = self.lines[seen:]
            for line in lines:
                if rx.search(line):
                    return line
            seen += len(lines)
            time.sleep(0.02)
        raise TimeoutError(f"no log line matching {pattern!r}:\n{self.output}")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc
        code = self.proc.wait(timeout)
        if self._reader:
            self._reader.join(2)
        return code

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL the process group if it does not exit in time."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._reader:
            self._reader.join(2)
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
