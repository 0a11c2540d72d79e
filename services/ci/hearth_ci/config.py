"""Settings of the ci service (env prefix HEARTH_CI_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from hearth_runtime import ServiceConfig


class CiConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="HEARTH_CI_", extra="forbid")

    grpc_listen: str = "[::]:50063"
    metrics_listen: str = "0.0.0.0:9163"
    state_dir: Path = Path("/var/lib/hearth/ci")

    zuul_url: str = ""
    """Zuul's web root (e.g. https://zuul.example.org), or the full status URL."""
    zuul_tenant: str = ""
    """Zuul 3+ tenant: polls /api/tenant/{tenant}/status; empty = Zuul 2 /status.json."""
    gerrit_url: str = ""
    """Gerrit's web root (e.g. https://review.example.org)."""
    gerrit_user: str = ""
    """Gerrit HTTP credentials; when set, queries go under /a/ with basic auth."""
    gerrit_password: str = ""
    http_timeout_seconds: float = 10.0
    default_refresh_seconds: float = 30.0
    """Refresh interval of a watch that does not set one."""
    min_refresh_seconds: float = 5.0
    """The shortest refresh interval a watch may ask for."""
    idle_poll_seconds: float = 60.0
    """How often Zuul is polled while no watch exists (ListPipelines, inline dashboards)."""
    backoff_base_seconds: float = 2.0
    """First retry delay after a failed poll; doubles per failure (with +-25 % jitter)."""
    backoff_max_seconds: float = 120.0

    @field_validator("zuul_url", "gerrit_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator(
        "http_timeout_seconds",
        "default_refresh_seconds",
        "min_refresh_seconds",
        "idle_poll_seconds",
        "backoff_base_seconds",
        "backoff_max_seconds",
    )
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value
