"""The `hearth` CLI against a gateway (the commands run in a thread: the gateway serves here)."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_harness import OPERATOR, VIEWER, MakeGateway, Running  # type: ignore[import-not-found]
from typer.testing import CliRunner, Result

from hearth.audio.v1 import audio_pb2
from hearth_cli.main import State, app
from hearth_client.tokens import hash_token


async def hearth(gw: Running, *args: str, token: str | None = OPERATOR) -> Result:
    State.settings = None
    options = ["--gateway", gw.grpc_address]
    if token:
        options += ["--token", token]
    return await asyncio.to_thread(CliRunner().invoke, app, [*options, *args])


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.delenv("HEARTH_TOKEN", raising=False)
    monkeypatch.delenv("HEARTH_GATEWAY", raising=False)


async def test_status_hosts_and_wake(gw: Running) -> None:
    result = await hearth(gw, "status")
    assert result.exit_code == 0, result.output
    assert "wake" in result.output and "SERVING" in result.output and "9.9.9" in result.output
    result = await hearth(gw, "hosts", "add", "devbox", "--mac", "02:00:00:00:00:01",
                          "--ipv4", "198.18.0.9")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = await hearth(gw, "hosts", token=VIEWER)
    assert result.exit_code == 0 and "devbox" in result.output and "ASLEEP" in result.output
    assert "HOST_STATE_" not in result.output  # the CLI shows the word, not the enum name
    result = await hearth(gw, "wake", "devbox", "--wait", "--timeout", "5")
    assert result.exit_code == 0, result.output
    assert "hosts/devbox is awake" in result.output
    assert gw.backends.wake.hosts["hosts/devbox"].state == 2  # HOST_STATE_AWAKE in the backend
    result = await hearth(gw, "hosts", "rm", "devbox")
    assert result.exit_code == 0 and gw.backends.wake.hosts == {}


async def test_audio_commands(gw: Running) -> None:
    result = await hearth(gw, "audio", "patch", "office", "tv")
    assert result.exit_code == 0, result.output
    assert gw.backends.audio.zones["zones/office"].stream == "streams/tv"
    result = await hearth(gw, "audio", "volume", "office", "80", "--mute")
    assert result.exit_code == 0, result.output
    zone = gw.backends.audio.zones["zones/office"]
    assert zone.volume == pytest.approx(0.8) and zone.muted
    gw.backends.audio.zones["zones/kitchen"].ClearField("volume")  # unset means 100 %
    result = await hearth(gw, "audio", "zones")
    rows = {line.split()[1]: line for line in result.output.splitlines() if "%" in line}
    assert "80%" in rows["office"] and "100%" in rows["kitchen"]
    result = await hearth(gw, "audio", "pause")
    assert result.exit_code == 0 and "paused" in result.output
    result = await hearth(gw, "audio", "next")
    assert result.exit_code == 0, result.output
    assert "paused: Blue in Green — Miles Davis" in result.output
    result = await hearth(gw, "audio", "play")
    assert result.exit_code == 0, result.output
    assert "playing: Blue in Green — Miles Davis" in result.output
    assert gw.backends.audio.actions == ["ACTION_PAUSE", "ACTION_NEXT", "ACTION_PLAY"]
    assert gw.backends.audio.player.state == audio_pb2.PLAYER_STATE_PLAYING


async def test_audio_streams_lists_every_stream(gw: Running) -> None:
    gw.backends.audio.streams["streams/tv"].source = "hdmi-capture"
    gw.backends.audio.streams["streams/tv"].state = audio_pb2.STREAM_STATE_SENDING
    result = await hearth(gw, "audio", "streams", token=VIEWER)
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines() if "239.255" in line}
    assert set(rows) == {"radio", "tv"}
    assert "hdmi-capture" in rows["tv"] and "239.255.0.1:46000" in rows["tv"]
    assert "SENDING" in rows["tv"]


def test_bash_completion_completes_commands(tmp_path: Path) -> None:
    """The script `hearth --show-completion bash` prints, loaded into a real bash."""
    hearth_bin = Path(sys.executable).parent / "hearth"
    shown = subprocess.run(
        [hearth_bin, "--show-completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "complete -o default -F _hearth_completion hearth" in shown.stdout
    script = tmp_path / "hearth-completion.bash"
    script.write_text(shown.stdout)

    def complete(*words: str) -> set[str]:
        line = " ".join(shlex.quote(w) for w in words)
        done = subprocess.run(
            ["bash", "-c", f'source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1};'
             ' _hearth_completion hearth; printf "%s\\n" "${COMPREPLY[@]}"'],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "PATH": f"{hearth_bin.parent}:{os.environ['PATH']}"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return set(done.stdout.split())

    assert complete("hearth", "au") == {"audio"}
    assert complete("hearth", "audio", "p") == {"patch", "play", "pause"}
    assert {"ls", "add", "rm"} <= complete("hearth", "hosts", "")


async def test_readable_errors(gw: Running, tmp_path: Path) -> None:
    result = await hearth(gw, "hosts", token=None)
    assert result.exit_code == 1
    assert "UNAUTHENTICATED" in result.output and "HEARTH_TOKEN" in result.output
    result = await hearth(gw, "wake", "devbox", token=VIEWER)
    assert result.exit_code == 1 and "PERMISSION_DENIED" in result.output
    result = await hearth(gw, "wake", "nope")
    assert result.exit_code == 1 and "NOT_FOUND" in result.output and "hosts/nope" in result.output
    State.settings = None
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["--gateway", "127.0.0.1:1", "status"]
    )
    assert result.exit_code == 1 and "cannot reach the gateway at 127.0.0.1:1" in result.output


async def test_token_from_config_file(gw: Running, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(f"gateway: {gw.grpc_address}\ntoken: {VIEWER}\n")
    State.settings = None
    result = await asyncio.to_thread(CliRunner().invoke, app, ["status"])
    assert result.exit_code == 0, result.output
    assert "(viewer)" in result.output


def test_token_new_prints_a_working_hash() -> None:
    result = CliRunner().invoke(app, ["token", "new", "olivia", "--role", "operator"])
    assert result.exit_code == 0, result.output
    assert "role: operator" in result.output
    token = result.output.split("it is not stored anywhere): ")[1].split()[0]
    digest = result.output.split("sha256: ")[1].split()[0]
    assert hash_token(token) == digest and token.startswith("hth_")


async def test_ci_dash_is_mounted_and_reads_through_the_gateway(
    make_gateway: MakeGateway,
) -> None:
    result = CliRunner().invoke(app, ["ci", "dash", "--help"])
    assert result.exit_code == 0 and "--owner" in result.output and "--dump-zuul" in result.output
    gw = await make_gateway(anonymous_read=True)
    options = ["--service", gw.grpc_address, "--watch", "mine", "-r", "0", "--no-color"]
    result = await asyncio.to_thread(CliRunner().invoke, app, ["ci", "dash", *options])
    assert result.exit_code == 0, result.output
    assert "12345,6" in result.output and "Zuul is being upgraded" in result.output


async def test_ci_dash_sends_the_token_when_reading_needs_one(
    make_gateway: MakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = await make_gateway(anonymous_read=False)
    options = ["--service", gw.grpc_address, "--watch", "mine", "-r", "0", "--no-color"]
    result = await asyncio.to_thread(CliRunner().invoke, app, ["ci", "dash", *options])
    assert result.exit_code == 2 and "UNAUTHENTICATED" in result.output
    assert "HEARTH_TOKEN" in result.output
    monkeypatch.setenv("HEARTH_TOKEN", VIEWER)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["ci", "dash", *options])
    assert result.exit_code == 0, result.output
    assert "12345,6" in result.output
