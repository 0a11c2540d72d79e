"""Settings of the ci service (env prefix HEARTH_CI_)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from hearth_runtime import ServiceConfig


class CiConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="HEARTH_CI_", extra="forbid")

    grpc_listen: str = "[::]:50063"
    metrics_listen: str = "0.0.0.0:9163"
    state_dir: Path = Path("/var/lib/hearth/ci")
