"""The sync measurement's signal processing on synthetic recordings with known offsets."""

from __future__ import annotations

import numpy as np
import pytest

from hearth_audio import sync

RATE = sync.RATE


def recording(signal: np.ndarray, delay_s: float, start: float, tone: float) -> sync.Recording:
    """What a zone would record: the stream (a tone as music, plus the test signal)
    played ``delay_s`` late, in a recording starting at ``start`` (on the shared clock)."""
    n = int(2.5 * RATE)
    t = start + np.arange(n) / RATE
    out = tone * np.sin(2 * np.pi * 440 * (t - delay_s))
    # Fractional delay by frequency-domain shift of the signal placed at t = 0.3 s.
    shift = 0.3 + delay_s - start
    size = 1 << (n + signal.size).bit_length()
    spec = np.fft.rfft(signal, size) * np.exp(-2j * np.pi * np.fft.rfftfreq(size, 1 / RATE) * shift)
    out += np.fft.irfft(spec, size)[:n]
    rng = np.random.default_rng(3)
    return sync.Recording(out + rng.normal(0, 1e-3, n), start)


@pytest.mark.parametrize("offset_ms", [0.0, 0.37, 40.0, -12.5])
def test_offset_found_to_a_fraction_of_a_millisecond(offset_ms: float) -> None:
    signal = sync.burst_signal()
    a = recording(signal, 0.200, start=0.0, tone=0.5)
    # B started recording 7.3 ms later: the start stamps must take that out.
    b = recording(signal, 0.200 + offset_ms / 1e3, start=0.0073, tone=0.5)
    result = sync.offset_between(a, b, signal)
    assert result.offset_s * 1e3 == pytest.approx(offset_ms, abs=0.1)
    assert result.confidence > 0.9 and result.parts == 5


def test_no_signal_means_no_confidence() -> None:
    signal = sync.burst_signal()
    a, b = (sync.Recording(np.random.default_rng(i).normal(0, 1e-3, 2 * RATE), 0.0) for i in (1, 2))
    result = sync.offset_between(a, b, signal)
    assert result.confidence < 0.5
