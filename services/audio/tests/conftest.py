"""Fixtures of the audio service tests (the lab harness lives in audio_harness.py)."""

from audio_harness import audio_lab

__all__ = ["audio_lab"]
