#!/usr/bin/env python3
"""Audio: sync offset between two zones playing the same stream, over a minute.

Both zones of the lab house play the radio stream with equal settings. After they settle
(module-rtp-recv adapts its latency gradually), MeasureSync runs back to back for a
minute; the mean and spread of the offset are reported.
"""

from __future__ import annotations

import statistics
import time

from hearth.audio.v1 import audio_pb2
from hearth_audio.testbed import audio_lab
from hearth_testing.bench import Result

SETTLE = 60.0
WINDOW = 60.0


def main() -> None:
    result = Result("audio_sync", "Audio: sync offset between two zones over a minute")
    with audio_lab(prefix="bs") as al:
        for zone in ("a", "b"):
            al.stub.SubscribeZone(
                audio_pb2.SubscribeZoneRequest(name=f"zones/{zone}", stream="streams/radio")
            )
        request = audio_pb2.MeasureSyncRequest(zone_a="zones/a", zone_b="zones/b")
        settling: list[float] = []
        start = time.monotonic()
        while time.monotonic() - start < SETTLE:
            settling.append(round(al.stub.MeasureSync(request).offset_ms, 3))
        offsets: list[float] = []
        confidences: list[float] = []
        start = time.monotonic()
        while time.monotonic() - start < WINDOW:
            m = al.stub.MeasureSync(request)
            offsets.append(round(m.offset_ms, 3))
            confidences.append(m.confidence)
    result.add("mean offset after settling", statistics.fmean(offsets), "ms")
    result.add("spread (standard deviation)", statistics.pstdev(offsets), "ms")
    result.add("spread (max - min)", max(offsets) - min(offsets), "ms")
    result.add("lowest confidence", min(confidences), "")
    result.add("measurements in the minute", len(offsets), "")
    result.series["offset after settling (ms)"] = offsets
    result.series["offset while settling (ms)"] = settling
    result.notes.append(
        f"equal zone settings (latency 200 ms); {SETTLE:.0f} s settling after both receivers"
        " were loaded, then MeasureSync back to back (3 s windows, noise bursts)"
    )
    result.write()


if __name__ == "__main__":
    main()
