#!/usr/bin/env python3
"""Audio: CPU cost of stream health monitoring per 48 kHz stereo stream (1, 4, 16 streams).

The real service runs in a lab host and listens to N real PulseAudio RTP streams (null
sinks on the station, module-rtp-send, ~151 packets/s each). Its CPU time (user+system,
from /proc) is measured over a window with the streams sending, minus the same window with
them disabled (the service then listens to silent groups: reconciling, health ticks and
gRPC remain), divided by N.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from hearth.audio.v1 import audio_pb2
from hearth_audio_lab.testbed import audio_lab
from hearth_testing import wait_for
from hearth_testing.bench import Result

WINDOW = 15.0
COUNTS = (1, 4, 16)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pid: int) -> float:
    """Fraction of one core the process used over WINDOW seconds."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(WINDOW)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def main() -> None:
    result = Result("audio_health", "Audio: health monitoring CPU per RTP stream")
    with audio_lab(prefix="bh") as al:
        assert al.service.proc is not None
        pid = al.service.proc.pid
        stub = al.stub
        for sid in ("radio", "tv"):
            stub.DisableStream(audio_pb2.DisableStreamRequest(name=f"streams/{sid}"))
        created = 0
        for n in COUNTS:
            while created < n:
                created += 1
                stub.CreateStream(
                    audio_pb2.CreateStreamRequest(
                        stream_id=f"s{created}",
                        stream=audio_pb2.Stream(group=f"239.255.1.{created}", enabled=False),
                    )
                )
            names = [f"streams/s{i}" for i in range(1, n + 1)]
            idle = measure(pid)
            for name in names:
                stub.EnableStream(audio_pb2.EnableStreamRequest(name=name))

            def all_up(names: list[str] = names) -> bool:
                return all(
                    stub.GetStreamHealth(audio_pb2.GetStreamHealthRequest(name=f"{name}/health")).up
                    for name in names
                )

            wait_for(f"{n} streams up", all_up, timeout=60)
            busy = measure(pid)
            packets = sum(
                stub.GetStreamHealth(audio_pb2.GetStreamHealthRequest(name=f"{x}/health")).packets
                for x in names
            )
            per_stream = max(0.0, busy - idle) / n * 100
            result.add(f"CPU per stream with {n} streams", per_stream, "% of a core", "< 2")
            result.add(f"service CPU with {n} streams sending", busy * 100, "% of a core")
            result.add(f"service CPU with {n} streams silent", idle * 100, "% of a core")
            result.notes.append(f"{n} streams: {packets} packets received in total")
            for name in names:
                stub.DisableStream(audio_pb2.DisableStreamRequest(name=name))
    result.notes.append(
        f"window {WINDOW:.0f} s per figure; senders are real PulseAudio module-rtp-send"
        " on the station host; CPU from /proc/<pid>/stat of the service process"
    )
    result.write()


if __name__ == "__main__":
    main()
