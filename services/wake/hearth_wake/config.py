"""Settings of the wake service (env prefix HEARTH_WAKE_)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from hearth_runtime import ServiceConfig


class WakeConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="HEARTH_WAKE_", extra="forbid")

    grpc_listen: str = "[::]:50061"
    metrics_listen: str = "0.0.0.0:9161"
    state_dir: Path = Path("/var/lib/hearth/wake")
