#!/usr/bin/env python3
"""Audio: sync offset between two zones playing the same stream, over a minute.

Both zones of the lab house play the radio stream with equal settings. After they settle
(module-rtp-recv adapts its latency gradually), MeasureSync runs back to back for a
minute; the mean and spread of the offset are reported.
"""

from __future__ import annotations

import statistics
import time

import grpc

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth_audio_lab.testbed import audio_lab
from hearth_testing.bench import Result

SETTLE = 60.0
WINDOW = 60.0
MAX_FAILURES = 10  # more UNAVAILABLE answers than this in a run is a real problem


class Measurer:
    """MeasureSync with the occasional UNAVAILABLE (a recording that failed on a busy
    machine) counted and skipped instead of ending the benchmark."""

    def __init__(self, stub: audio_pb2_grpc.AudioServiceStub) -> None:
        self.stub = stub
        self.request = audio_pb2.MeasureSyncRequest(zone_a="zones/a", zone_b="zones/b")
        self.failures: list[str] = []

    def __call__(self) -> audio_pb2.SyncMeasurement | None:
        try:
            return self.stub.MeasureSync(self.request, timeout=30)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            self.failures.append(str(exc.details()))
            if len(self.failures) > MAX_FAILURES:
                raise RuntimeError(f"MeasureSync unavailable too often: {self.failures}") from exc
            return None


def main() -> None:
    result = Result("audio_sync", "Audio: sync offset between two zones over a minute")
    with audio_lab(prefix="bs") as al:
        for zone in ("a", "b"):
            al.stub.SubscribeZone(
                audio_pb2.SubscribeZoneRequest(name=f"zones/{zone}", stream="streams/radio")
            )
        measure = Measurer(al.stub)
        settling: list[float] = []
        start = time.monotonic()
        while time.monotonic() - start < SETTLE:
            if (m := measure()) is not None:
                settling.append(round(m.offset_ms, 3))
        settling_failures = len(measure.failures)
        offsets: list[float] = []
        confidences: list[float] = []
        start = time.monotonic()
        while time.monotonic() - start < WINDOW:
            if (m := measure()) is not None:
                offsets.append(round(m.offset_ms, 3))
                confidences.append(m.confidence)
    if not offsets:
        raise RuntimeError(f"no MeasureSync succeeded in the window: {measure.failures}")
    result.add("mean offset after settling", statistics.fmean(offsets), "ms")
    result.add("spread (standard deviation)", statistics.pstdev(offsets), "ms")
    result.add("spread (max - min)", max(offsets) - min(offsets), "ms")
    result.add("lowest confidence", min(confidences), "")
    result.add("measurements in the minute", len(offsets), "")
    result.add("UNAVAILABLE answers while settling", settling_failures, "")
    result.add("UNAVAILABLE answers in the minute", len(measure.failures) - settling_failures, "")
    result.series["offset after settling (ms)"] = offsets
    result.series["offset while settling (ms)"] = settling
    result.notes.append(
        f"equal zone settings (latency 200 ms); {SETTLE:.0f} s settling after both receivers"
        " were loaded, then MeasureSync back to back (3 s windows, noise bursts)"
    )
    if measure.failures:
        result.notes.append(f"UNAVAILABLE answers (skipped): {measure.failures}")
    result.write()


if __name__ == "__main__":
    main()
