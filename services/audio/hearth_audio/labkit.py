"""Start PulseAudio and MPD inside lab hosts: for tests, benchmarks, the demo and images.

A "station" is a PulseAudio (with a TCP control port) plus MPD playing into one of its
sinks; a "zone" is a PulseAudio with a null sink ``speakers`` and a TCP control port. Each
daemon gets its own runtime directory under the lab's workdir (PulseAudio refuses to start
on a stale pid file), runs in the foreground under the lab (so teardown kills it), and is
waited for until it answers.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hearth_lab import Host
from hearth_testing import wait_for

PULSE_TCP_PORT = 4713
MPD_PORT = 6600
RATE = 48000


def _ready(what: str, check: Callable[[], bool], timeout: float, log: Path | None) -> None:
    """hearth_testing.wait_for, with the tail of the daemon's log when it never answers."""
    try:
        wait_for(f"{what} to answer", check, timeout=timeout)
    except AssertionError as exc:
        detail = log.read_text()[-2000:] if log and log.exists() else ""
        raise TimeoutError(f"{exc}\n{detail}") from None


def station_script(sinks: Sequence[str] = ()) -> list[str]:
    """PulseAudio commands of a station: control over unix + TCP, optional null sinks."""
    lines = [
        "load-module module-native-protocol-unix auth-anonymous=1",
        f"load-module module-native-protocol-tcp auth-anonymous=1 port={PULSE_TCP_PORT}",
        # A sink that always exists, so that clients have a default while streams are off.
        "load-module module-null-sink sink_name=idle",
        "set-default-sink idle",
    ]
    lines += [f"load-module module-null-sink sink_name={s}" for s in sinks]
    return lines


def zone_script(sink: str = "speakers") -> list[str]:
    """PulseAudio commands of a zone box: a null sink standing in for the speakers.

    ``norewinds=1``: a sound card plays what it was given; a null sink that rewinds
    whenever a client (a recorder) connects makes module-rtp-recv's latency control jump
    and oscillate by tens of ms, which a real zone would not.
    """
    return [
        "load-module module-native-protocol-unix auth-anonymous=1",
        f"load-module module-native-protocol-tcp auth-anonymous=1 port={PULSE_TCP_PORT}",
        f"load-module module-null-sink sink_name={sink} rate={RATE} norewinds=1",
        f"set-default-sink {sink}",
    ]


@dataclass
class PulseDaemon:
    """One PulseAudio in a lab host; ``server`` is its TCP address for other hosts.

    ``realtime``: run its I/O threads with SCHED_RR, as PulseAudio does on a zone box
    (rtkit). On a busy machine a late wake-up when a receiver starts playing stays in
    that zone's latency for good: with it, fresh receivers start within ~2 ms of their
    setting; without it, within ~6 ms (docs/audio.md "Sync").
    """

    host: Host
    name: str
    script: list[str]
    realtime: bool = False
    proc: subprocess.Popen[Any] | None = None
    dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.dir = self.host.lab.workdir / f"pulse-{self.name}"
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def server(self) -> str:
        return f"tcp:{self.host.ipv4}:{PULSE_TCP_PORT}"

    @property
    def unix_server(self) -> str:
        return f"unix:{self.dir}/native"

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.dir),
            "PULSE_RUNTIME_PATH": str(self.dir),
            "PULSE_STATE_PATH": str(self.dir),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        }

    def start(self, timeout: float = 20.0) -> PulseDaemon:
        pa_file = self.dir / "hearth.pa"
        pa_file.write_text("\n".join(self.script) + "\n")
        (self.dir / "pid").unlink(missing_ok=True)
        argv = [
            "pulseaudio",
            "--daemonize=no",
            "--system=no",
            "--exit-idle-time=-1",
            f"--high-priority={'yes' if self.realtime else 'no'}",
            f"--realtime={'yes' if self.realtime else 'no'}",
            "--use-pid-file=no",
            "-n",
            "-F",
            str(pa_file),
            "--log-target=stderr",
        ]
        self.proc = self.host.popen(argv, log=True, env=self.env())
        _ready(f"PulseAudio {self.name}", self.ready, timeout, self.log)
        return self

    @property
    def log(self) -> Path | None:
        return self.host.log_path(self.proc) if self.proc else None

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"PulseAudio {self.name} exited; see {self.log}")
        return self.pactl("info").returncode == 0

    def pactl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.host.run(
            ["pactl", "--server", self.unix_server, *args], env=self.env(), timeout=10
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.host.stop(self.proc, timeout=3)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL, as when a zone box loses power."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def clock(self, source: str, period_ms: float = 2.0) -> subprocess.Popen[Any]:
        """Read ``source`` (a sink's monitor) every ``period_ms`` and discard it, so that its
        null sink renders in ``period_ms`` steps, like a sound card with a fixed period.

        Left alone, a null sink renders as far ahead as its clients allow (100 ms and
        more), and a module-rtp-recv session starting on it begins playing anywhere
        within that block: two fresh receivers then differ by up to ~30 ms. Every other
        client (a recorder, a receiver) changes that block size too. The lab kills the
        reader on close; stop it with ``host.stop``.
        """
        argv = ["parec", "--server", self.unix_server, "-d", source, "--raw"]
        argv += ["--format=s16le", "--channels=1", f"--latency-msec={period_ms:g}"]
        return self.host.popen(argv, env=self.env(), stdout=subprocess.DEVNULL)

    def restart(self, timeout: float = 20.0) -> PulseDaemon:
        self.stop()
        return self.start(timeout)


def write_tone(path: Path, frequency: float, seconds: float = 30.0, title: str = "") -> Path:
    """A stereo 48 kHz 16-bit sine (with a title tag if the format allows) via sox."""
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = ["sox", "-n", "-r", str(RATE), "-c", "2", "-b", "16"]
    if title and path.suffix == ".flac":
        argv += ["--comment", f"TITLE={title}"]
    argv += [str(path), "synth", str(seconds), "sine", str(frequency), "vol", "0.5"]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return path


def write_piece(path: Path, notes: Sequence[float], note_seconds: float, title: str) -> Path:
    """A little generated tune: ``notes`` (Hz) one after another, repeated to ~30 s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    repeats = max(1, int(30 / (note_seconds * len(notes))))
    # sox synth makes one tone per run: render each note, then splice them ("sox a b out").
    parts = []
    for i, freq in enumerate(notes):
        part = path.with_name(f".{path.stem}-{i}.wav")
        subprocess.run(
            [
                "sox",
                "-n",
                "-r",
                str(RATE),
                "-c",
                "2",
                "-b",
                "16",
                str(part),
                "synth",
                str(note_seconds),
                "pluck",
                str(freq),
                "vol",
                "0.6",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        parts.append(str(part))
    subprocess.run(
        ["sox", *parts * repeats, "--comment", f"TITLE={title}", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for name in parts:
        Path(name).unlink()
    return path


@dataclass
class MpdDaemon:
    """MPD in a lab host playing its ``music`` folder into a sink of a local PulseAudio."""

    host: Host
    pulse: PulseDaemon
    sink: str
    music: Path
    proc: subprocess.Popen[Any] | None = None
    dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.dir = self.host.lab.workdir / f"mpd-{self.host.name}"
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> str:
        return f"{self.host.ipv4}:{MPD_PORT}"

    def config(self) -> str:
        return mpd_config(self.music, self.dir, self.pulse.unix_server, self.sink)

    def start(self, timeout: float = 20.0) -> MpdDaemon:
        conf = self.dir / "mpd.conf"
        conf.write_text(self.config())
        self.proc = self.host.popen(
            ["mpd", "--no-daemon", "--stderr", str(conf)], log=True, env=self.pulse.env()
        )
        _ready("MPD", self._listening, timeout, self.host.log_path(self.proc))
        self.mpc("update", "--wait")
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"MPD exited; see {self.host.log_path(self.proc)}")
        return self.host.run(["mpc", "-h", "127.0.0.1", "status"], timeout=10).returncode == 0

    def mpc(self, *args: str) -> str:
        res = self.host.run(["mpc", "-h", "127.0.0.1", *args], timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"mpc {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def play_all(self) -> None:
        """Queue every file of the music folder, repeat, and play."""
        self.mpc("clear")
        self.mpc("add", "/")
        self.mpc("repeat", "on")
        self.mpc("play")

    def stop(self) -> None:
        if self.proc is not None:
            self.host.stop(self.proc, timeout=3)
            self.proc = None


def mpd_config(music: Path, state: Path, pulse_server: str, sink: str) -> str:
    """An MPD configuration that plays into ``sink`` of the PulseAudio at ``pulse_server``."""
    return f"""\
music_directory    "{music}"
playlist_directory "{state}"
db_file            "{state}/database"
state_file         "{state}/state"
bind_to_address    "0.0.0.0"
port               "{MPD_PORT}"
auto_update        "no"
audio_output {{
    type        "pulse"
    name        "{sink}"
    server      "{pulse_server}"
    sink        "{sink}"
    mixer_type  "software"
}}
"""


def port_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
