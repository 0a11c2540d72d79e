"""`make demo` (python -m hearth_demo) as a newcomer meets it: the printed web page address
opens the page, and the printed operator-token command works as printed."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth_lab import lab_available
from hearth_testing import wait_for

PAGE_LINE = re.compile(r"^\s*web page\s+(http://\S+)$")
TOKEN_LINE = re.compile(
    r"gateway\s+operator token (\S+)\s+\(.*?(HEARTH_TOKEN=\S+ hearth .*status)\)"
)


@pytest.fixture
def demo() -> Iterator[list[str]]:
    """The running demo's output lines so far (it is stopped with SIGTERM, as Ctrl-C would)."""
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"hearth_lab: {reason}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth_demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # a pipe, not a terminal
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(60) == 0, "\n".join(lines)
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(5)


def test_the_printed_page_address_and_token_command_work(demo: list[str]) -> None:
    wait_for("the demo's token line", lambda: any(TOKEN_LINE.search(x) for x in demo), 120)
    page = next(m[1] for m in map(PAGE_LINE.match, demo) if m)
    token, command = next(m.groups() for m in map(TOKEN_LINE.search, demo) if m)

    with urllib.request.urlopen(page, timeout=15) as response:
        assert response.status == 200 and "<title>hearth</title>" in response.read().decode()

    # The command exactly as printed (HEARTH_TOKEN=... hearth --gateway ... status).
    assignment, *argv = shlex.split(command)
    assert assignment == f"HEARTH_TOKEN={token}"
    hearth = Path(sys.executable).parent / argv[0]
    env = {**os.environ, "HEARTH_TOKEN": token, "HEARTH_CONFIG": "/nonexistent/hearth.yaml"}

    def status() -> subprocess.CompletedProcess[str] | None:
        # Exit 3 while a backend is not yet reported up by the gateway's checks.
        done = subprocess.run(
            [hearth, *argv[1:]], env=env, capture_output=True, text=True, timeout=60
        )
        return done if done.returncode != 3 else None

    done = wait_for("every backend up in `hearth status`", status, 30, every=0.5)
    assert done is not None  # (wait_for returns a truthy value)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(operator)" in done.stdout
    for backend in ("wake", "audio", "ci"):
        assert re.search(rf"{backend}\b.*SERVING", done.stdout), done.stdout
