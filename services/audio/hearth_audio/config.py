"""Settings of the audio service (env prefix HEARTH_AUDIO_)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from hearth_runtime import ServiceConfig


class AudioConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="HEARTH_AUDIO_", extra="forbid")

    grpc_listen: str = "[::]:50062"
    metrics_listen: str = "0.0.0.0:9162"
    state_dir: Path = Path("/var/lib/hearth/audio")
