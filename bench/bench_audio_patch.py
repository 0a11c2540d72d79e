#!/usr/bin/env python3
"""Audio: patch-to-sound, from the SubscribeZone call to the stream audible in the zone.

A recorder (parec, 10 ms fragments) runs on the zone's sink monitor all the time; each
trial unsubscribes the zone, waits for silence, calls SubscribeZone and stamps the first
fragment that is loud. Run twice: with the service re-sending the stream's last SAP
announcement right after loading the receiver (the default), and without (PulseAudio
alone then waits for the station's next announcement, sent every 5 s).
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import numpy as np

from hearth.audio.v1 import audio_pb2
from hearth_audio_lab.testbed import AudioLab, audio_lab
from hearth_testing import wait_for
from hearth_testing.bench import Result

CHUNK = 480  # frames of 10 ms, mono s16le


class LoudWatch:
    """Follows a zone's output; ``loud_since(t)`` is the first loud chunk after ``t``."""

    def __init__(self, al: AudioLab, zone: str) -> None:
        pulse = al.zones[zone]
        argv = ["parec", "--server", pulse.unix_server, "-d", "speakers.monitor", "--raw"]
        argv += ["--format=s16le", "--channels=1", "--rate=48000", "--latency-msec=10"]
        self.proc: subprocess.Popen[Any] = pulse.host.popen(
            argv, stdout=subprocess.PIPE, env=pulse.env()
        )
        self.loud: list[float] = []
        self.last_quiet = 0.0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            data = self.proc.stdout.read(CHUNK * 2)
            if not data:
                return
            now = time.monotonic()
            x = np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768
            if float(np.sqrt(np.mean(x * x))) > 0.01:
                self.loud.append(now)
            else:
                self.last_quiet = now

    def first_loud_after(self, t: float) -> float | None:
        return next((x for x in self.loud if x > t), None)


def trials(al: AudioLab, watch: LoudWatch, n: int) -> list[float]:
    out = []
    for _ in range(n):
        al.stub.UnsubscribeZone(audio_pb2.UnsubscribeZoneRequest(name="zones/a"))
        wait_for("silence", lambda: time.monotonic() - watch.last_quiet < 0.05)
        time.sleep(0.5)
        t0 = time.monotonic()
        al.stub.SubscribeZone(audio_pb2.SubscribeZoneRequest(name="zones/a", stream="streams/tv"))
        t1 = wait_for("sound", lambda: watch.first_loud_after(t0), timeout=15, every=0.01)  # noqa: B023 - called before t0 changes
        assert t1 is not None  # (wait_for returns a truthy value)
        out.append(t1 - t0)
    return out


def main() -> None:
    result = Result("audio_patch", "Audio: patch-to-sound (SubscribeZone -> audible)")
    for resend, n in ((True, 30), (False, 8)):
        env = {"HEARTH_AUDIO_RESEND_SAP": "true" if resend else "false"}
        with audio_lab(prefix="bp", env=env) as al:
            watch = LoudWatch(al, "a")
            samples = trials(al, watch, n)
            watch.proc.terminate()
        label = "with SAP re-send" if resend else "PulseAudio alone (no re-send)"
        p50, p95 = np.percentile(samples, [50, 95])
        result.add(f"p50 {label}", float(p50), "s")
        result.add(f"p95 {label}", float(p95), "s", "< 1.5" if resend else "")
        result.series[f"patch-to-sound {label} (s)"] = [round(x, 4) for x in samples]
        result.notes.append(f"{label}: {n} trials, max {max(samples):.3f} s")
    result.notes.append(
        "audible = first 10 ms fragment of the zone's sink monitor with RMS > 0.01"
        " (parec --latency-msec=10 in the zone host); the 880 Hz tv stream"
    )
    result.write()


if __name__ == "__main__":
    main()
