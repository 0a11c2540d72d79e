"""Fixtures of the audio service tests: one lab house shared by a test module."""

from collections.abc import Iterator

import pytest

from hearth_audio.testbed import AudioLab, audio_lab
from hearth_lab import lab_available


@pytest.fixture(scope="module")
def house() -> Iterator[AudioLab]:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"hearth_lab: {reason}")
    with audio_lab() as al:
        yield al
