"""Settings of the gateway (env prefix HEARTH_GATEWAY_)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from hearth_runtime import ServiceConfig


class GatewayConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="HEARTH_GATEWAY_", extra="forbid")

    grpc_listen: str = "[::]:50051"
    metrics_listen: str = "0.0.0.0:9160"
    http_listen: str = "0.0.0.0:8080"
    state_dir: Path = Path("/var/lib/hearth/gateway")
    wake_address: str = "localhost:50061"
    audio_address: str = "localhost:50062"
    ci_address: str = "localhost:50063"
