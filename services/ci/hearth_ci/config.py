"""Settings of the ci service (env prefix HEARTH_CI_)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from hearth_runtime import ServiceConfig, ports


class CiConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="HEARTH_CI_", extra="forbid")

    grpc_listen: str = ports.grpc_listen("ci")
    metrics_listen: str = ports.metrics_listen("ci")
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
    max_response_mib: float = 32.0
    """Largest Zuul or Gerrit answer read (MiB); a larger one is refused, the last good data
    stays."""
    max_inline_queries: int = 32
    """Distinct inline Gerrit queries (dashboards for a filter, not a watch) at once: each
    runs with the service's credentials, so readers cannot make it run more."""
    max_inline_queries_per_caller: int = 4
    """Distinct inline Gerrit queries one caller (x-hearth-principal) may hold at once."""
    allow_insecure_auth: bool = Field(default=False, validate_default=True)
    """Allow Gerrit credentials (gerrit_user/gerrit_password or user:password@ in a URL)
    over plain http://, where anyone on the path reads them. Off: refused at start."""

    @field_validator("zuul_url", "gerrit_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("max_inline_queries", "max_inline_queries_per_caller")
    @classmethod
    def _cap(cls, value: int) -> int:
        if not 1 <= value <= 10_000:
            raise ValueError("must be between 1 and 10000")
        return value

    @field_validator("allow_insecure_auth")
    @classmethod
    def _no_cleartext_credentials(cls, allow: bool, info: ValidationInfo) -> bool:
        """Basic auth over http:// gives the password to anyone on the path. Checked on
        this setting (the last one, so the URLs and credentials are known) so that the
        error names the variable that allows it."""
        if allow:
            return allow
        for name in ("zuul_url", "gerrit_url"):
            parts = urlsplit(str(info.data.get(name) or ""))
            if parts.scheme == "http" and (parts.username or parts.password):
                raise ValueError(
                    f"HEARTH_CI_{name.upper()} ({name}) carries credentials over plain "
                    "http://, in clear text; use https:// or set "
                    "HEARTH_CI_ALLOW_INSECURE_AUTH=true"
                )
        gerrit = str(info.data.get("gerrit_url") or "")
        if info.data.get("gerrit_password") and gerrit.startswith("http://"):
            raise ValueError(
                "HEARTH_CI_GERRIT_URL (gerrit_url) is plain http://: gerrit_user/"
                "gerrit_password would be sent in clear text; use https:// or set "
                "HEARTH_CI_ALLOW_INSECURE_AUTH=true"
            )
        return allow

    @field_validator(
        "max_response_mib",
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
