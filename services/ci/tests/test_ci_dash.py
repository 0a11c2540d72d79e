"""The terminal dashboard under tmux, against the replay server (directly) and against the
ci service, read back with ``capture-pane -p -e`` (lines and colours)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hearth_ci.dash import app as dash_app
from hearth_ci_lab.replay import change_info, control_sync, default_fixtures, wait_until_up
from hearth_testing import ServiceProcess, free_port, metric_value, scrape, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

GREEN, RED, YELLOW, LIGHT_BLUE = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[94m"


@pytest.fixture(scope="module")
def replay_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hearth_ci_lab.replay", "--fixtures", str(default_fixtures()),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert "replaying" in proc.stdout.readline()
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url)
    yield url
    proc.terminate()
    proc.wait(10)


class Tmux:
    """A private tmux server (own socket) running one command in a 200x60 pane."""

    def __init__(self, argv: list[str]) -> None:
        self.socket = f"hearth-ci-test-{os.getpid()}-{free_port()}"
        # The exit code is printed when the command ends (Ctrl-C must exit with 0).
        command = " ".join(_quote(a) for a in argv) + '; echo "dash exited with $?"'
        self.tmux("new-session", "-d", "-s", "dash", "-x", "200", "-y", "60", command)
        self.tmux("set-option", "-t", "dash", "remain-on-exit", "on")  # keep the last screen

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-e", "-t", "dash")

    def wait_for(self, what: str, check: Callable[[str], bool], within: float = 20.0) -> str:
        """The first screen for which ``check`` holds (the last screen in the error)."""

        def matching() -> str:
            text = self.screen()
            return text if check(text) else ""

        try:
            return wait_for(f"a screen with {what}", matching, timeout=within, every=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last screen:\n{self.screen()}") from None

    def interrupt(self) -> str:
        """Ctrl-C; the screen once the dashboard exited (and said with which code)."""
        self.tmux("send-keys", "-t", "dash", "C-c")
        return self.wait_for("the exit code", lambda s: "dash exited with" in s, within=10)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def _line(screen: str, needle: str) -> str:
    for line in screen.splitlines():
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} in:\n{screen}")


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


DASH = [sys.executable, "-m", "hearth_ci.dash", "-u", "danms", "-P", "secret", "-r", "1",
        "-o", "danms", "-p", "openstack/nova", "-s", "-c", "48423", "--color"]  # fmt: skip


def _check_queues(screen: str) -> None:
    plain = _plain(screen)
    assert (
        "Zuul dashboard: owner:danms OR change:48423 OR is:starred OR project:openstack/nova"
        in (plain)
    )
    assert "Event backlog: trigger 85" in plain
    assert RED in _line(screen, "Event backlog")  # above 20 is red
    assert re.search(r"Queue: gate \(\d+/30\)", plain)
    assert re.search(r"Queue: check \(\d+/15\)", plain)
    own = _line(screen, "(48240,1)")  # danms's own, passing
    assert GREEN in own and re.search(r"  5\. \(48240,1\) Fix quota checks \(\d+h\d\dm/", own)
    assert RED in _line(screen, "(48636,3)")  # own, a voting job failed
    assert "[Zuul tests patchset 3, Gerrit's current is 4]" in _plain(_line(screen, "(48636,3)"))
    assert LIGHT_BLUE in _line(screen, "(48385,1)")  # starred, not own
    behind = _line(screen, "(48423,2)")
    assert YELLOW in behind
    assert _plain(behind).endswith("?????????/rem:5m) behind 48418,1 (gate-ceilometer-python26)")


def test_dash_against_zuul_and_gerrit_directly(replay_url: str) -> None:
    pane = Tmux([*DASH, "--zuul", replay_url, "--tenant", "openstack", "--gerrit", replay_url])
    try:
        screen = pane.wait_for("the gate queue", lambda s: "Queue: gate" in s)
        _check_queues(screen)
        # Refreshes in place: the new document replaces the old screen.
        control_sync(replay_url, document="v2-status-basic.json")
        screen = pane.wait_for(
            "the new document", lambda s: "Example info message" in s and "Queue: gate" not in s
        )
        assert "\x1b[41m" in _line(screen, "Example info message")  # red banner
        assert _plain(screen).count("Zuul dashboard:") == 1
        control_sync(replay_url, zuul_fault="500")
        screen = pane.wait_for("the Zuul error", lambda s: "failed attempts" in s)
        line = _line(screen, "failed attempts")
        assert YELLOW in line and "zuul: Zuul answered HTTP 500" in line
        assert "Example info message" in screen  # the last good data stays
        screen = pane.interrupt()
        assert "dash exited with 0" in screen and "Traceback" not in screen
    finally:
        pane.close()
        control_sync(replay_url, document="v2-status-tree.json", zuul_fault="")


def test_dash_against_the_ci_service(replay_url: str, tmp_path: Path) -> None:
    env = {
        "HEARTH_CI_GRPC_LISTEN": "127.0.0.1:0",
        "HEARTH_CI_METRICS_LISTEN": "127.0.0.1:0",
        "HEARTH_CI_STATE_DIR": str(tmp_path),
        "HEARTH_CI_ZUUL_URL": replay_url,
        "HEARTH_CI_ZUUL_TENANT": "openstack",
        "HEARTH_CI_GERRIT_URL": replay_url,
        "HEARTH_CI_GERRIT_USER": "danms",
        "HEARTH_CI_GERRIT_PASSWORD": "secret",
        "HEARTH_CI_ALLOW_INSECURE_AUTH": "true",
        "HEARTH_CI_IDLE_POLL_SECONDS": "0.5",
    }
    with ServiceProcess("ci", env=env) as service:
        pane = Tmux([*DASH, "--service", service.grpc_address])
        try:
            _check_queues(pane.wait_for("the gate queue", lambda s: "Queue: gate" in s))
            samples = scrape(service.metrics_address)
            assert metric_value(samples, "hearth_ci_queue_items", pipeline="gate") == 30
            assert metric_value(samples, "hearth_ci_zuul_event_queue_length", queue="trigger") == 85
            age = metric_value(samples, "hearth_ci_data_age_seconds", source="zuul")
            assert age is not None and 0 <= age < 10
            assert metric_value(samples, "hearth_ci_poll_seconds_count", source="gerrit")
            screen = pane.interrupt()
            assert "dash exited with 0" in screen and "Traceback" not in screen
        finally:
            pane.close()


def test_dump_raw_zuul_and_gerrit_data(replay_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hearth_ci.dash", "-u", "danms", "-P", "secret", "-Z", "-G",
         "-s", "--zuul", replay_url, "--tenant", "openstack", "--gerrit", replay_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    decoder = json.JSONDecoder()
    zuul, end = decoder.raw_decode(out.stdout)
    gerrit, _ = decoder.raw_decode(out.stdout[end:].lstrip())
    assert len(zuul["pipelines"]) == 8 and zuul["trigger_event_queue"]["length"] == 85
    assert gerrit and all(change["starred"] for change in gerrit)
    bad = subprocess.run(
        [sys.executable, "-m", "hearth_ci.dash", "-O", "XOR", "-u", "danms", "--zuul", replay_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "-O/--operator: unknown operator 'XOR'" in bad.stderr


# ----------------------------------------------- in-process, once (-r 0): filters and backlog

ONCE = ["-u", "danms", "-P", "secret", "-r", "0", "--color", "--tenant", "openstack"]


def _dash_once(replay_url: str, *args: str) -> str:
    result = CliRunner().invoke(
        dash_app, [*ONCE, "--zuul", replay_url, "--gerrit", replay_url, *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


def _recorded(replay_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(pipeline, change, Gerrit's ChangeInfo for danms) of every change item recorded."""
    doc = json.loads((default_fixtures() / "v2-status-tree.json").read_text())
    out = []
    for pipeline in doc["pipelines"]:
        for queue in pipeline["change_queues"]:
            for item in (i for head in queue["heads"] for i in head):
                number, _, ps = item["id"].partition(",")
                if ps:
                    info = change_info(int(number), int(ps), item["project"], "danms")
                    out.append((pipeline["name"], item["id"], info))
    return out


def _shown(output: str) -> set[str]:
    return set(re.findall(r"\((\d+,\d+)\) ", _plain(output)))


@pytest.mark.parametrize(
    ("args", "header", "wanted"),
    [
        (["-t", "bp/cells-v2"], "topic:bp/cells-v2", lambda p, i: i.get("topic") == "bp/cells-v2"),
        (["-q", "project:openstack/heat"], "(project:openstack/heat)",
         lambda p, i: i["project"] == "openstack/heat"),
        (["-w"], "is:watched", lambda p, i: i["project"] == "openstack/nova"),
        (["-w", "-Q", "gate", "-Q", "post"], "is:watched (ignoring gate, post)",
         lambda p, i: i["project"] == "openstack/nova" and p not in ("gate", "post")),
        (["-t", "bp/cells-v2", "-w", "-O", "AND"], "topic:bp/cells-v2 AND is:watched",
         lambda p, i: i.get("topic") == "bp/cells-v2" and i["project"] == "openstack/nova"),
    ],
)  # fmt: skip
def test_dash_filter_options_show_exactly_their_changes(
    replay_url: str, args: list[str], header: str, wanted: Callable[[str, dict[str, Any]], bool]
) -> None:
    output = _dash_once(replay_url, *args)
    assert f"Zuul dashboard: {header}   " in _plain(output)
    expected = {
        change for pipeline, change, info in _recorded(replay_url) if wanted(pipeline, info)
    }
    assert expected and _shown(output) == expected
    queues = re.findall(r"Queue: (\w[\w-]*)", _plain(output))
    for ignored in ("gate", "post"):
        if ignored in args:
            assert ignored not in queues
    assert "No matching changes" not in output


@pytest.mark.parametrize(("length", "colour"), [(85, RED), (15, YELLOW), (8, ""), (5, None)])
def test_dash_backlog_colours(replay_url: str, length: int, colour: str | None) -> None:
    doc = json.loads((default_fixtures() / "v2-status-tree.json").read_text())
    doc["trigger_event_queue"]["length"] = length
    control_sync(replay_url, upload=doc)
    try:
        output = _dash_once(replay_url, "-c", "48418")
    finally:
        control_sync(replay_url, document="v2-status-tree.json")
    assert "(48418,1)" in output  # the uploaded document was shown
    if colour is None:  # 5 or fewer waiting events: no backlog line at all
        assert "Event backlog" not in output
        return
    line = _line(output, "Event backlog")
    assert _plain(line) == f"Event backlog: trigger {length} (management 0, result 2)"
    if colour:
        assert line.startswith(colour)
    else:
        assert "\x1b[" not in line


def test_the_hearth_cli_keeps_the_zuul_option(replay_url: str) -> None:
    """`hearth ci dash --zuul` (the original tool's way) runs the direct dashboard."""
    hearth = Path(sys.executable).with_name("hearth")
    out = subprocess.run(
        [str(hearth), "ci", "dash", "-u", "danms", "-P", "secret", "-Z", "-s",
         "--zuul", replay_url, "--tenant", "openstack", "--gerrit", replay_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["pipelines"]) == 8
