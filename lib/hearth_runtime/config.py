"""Configuration: a YAML file (``--config FILE``) overridden by environment variables.

Each service subclasses :class:`ServiceConfig` with its own ``env_prefix`` (e.g.
``HEARTH_WAKE_``). Values are validated at start; a bad one stops the service with a message
naming the environment variable and the YAML key, e.g.::

    invalid configuration: HEARTH_WAKE_GRPC_LISTEN (grpc_listen): not a host:port address
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from hearth_runtime import ports


class ConfigError(Exception):
    """The configuration cannot be used; the message names what is wrong."""


def _check_listen(value: str) -> str:
    if value.startswith("unix:"):
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not a host:port address (port 0 picks a free one)")
    return value


class ServiceConfig(BaseSettings):
    """Settings every service has. Subclasses set ``model_config`` with their env prefix."""

    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="forbid")
    service_name: ClassVar[str] = "hearth"

    grpc_listen: str = ports.grpc_listen(ports.GATEWAY)
    """gRPC address to listen on (host:port; port 0 picks a free port)."""
    metrics_listen: str = ports.metrics_listen(ports.GATEWAY)
    """Prometheus /metrics address (host:port; port 0 picks a free port)."""
    log_level: str = "INFO"
    state_dir: Path = Path("/var/lib/hearth")
    """Where a service keeps its SQLite state."""
    shutdown_grace_seconds: float = 5.0
    """How long in-flight calls may take to finish after SIGTERM."""

    @field_validator("grpc_listen", "metrics_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value.upper()

    @field_validator("shutdown_grace_seconds")
    @classmethod
    def _grace(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML file (passed as init kwargs by load_config).
        return env_settings, init_settings


C = TypeVar("C", bound=ServiceConfig)


def load_config(cls: type[C], config_file: str | Path | None = None) -> C:
    """Load ``cls`` from an optional YAML file plus the environment, or raise ConfigError."""
    data: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings")
        data = loaded
    try:
        return cls(**data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(cls, exc)) from None


def describe_errors(cls: type[ServiceConfig], exc: ValidationError) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        key = ".".join(loc) or "(config)"
        env = (prefix + loc[0]).upper() if loc else prefix
        given = err.get("input")
        shown = (
            f" (got {given!r})" if not isinstance(given, dict | list) and given is not None else ""
        )
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown setting")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{env} ({key}): {msg}{shown}")
    return "invalid configuration: " + "; ".join(lines)
