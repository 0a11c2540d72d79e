"""Where the gateway is and who you are: flags, then environment, then the config file.

``~/.config/hearth/config.yaml`` (or ``$HEARTH_CONFIG``)::

    gateway: hearth.lan:50051
    token: hth_...            # or HEARTH_TOKEN
    ca_file: /etc/hearth/ca.pem   # TLS to the gateway (optional)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from hearth_runtime import ports

DEFAULT_GATEWAY = ports.local_address(ports.GATEWAY, "127.0.0.1")


class CliError(Exception):
    """A readable error for the user (exit code 1, or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def config_path() -> Path:
    explicit = os.environ.get("HEARTH_CONFIG")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "hearth" / "config.yaml"


def load_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold a mapping (gateway:, token:)")
    unknown = set(data) - {"gateway", "token", "ca_file"}
    if unknown:
        raise CliError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    return data


@dataclass
class Settings:
    gateway: str
    token: str
    ca_file: str = ""

    @classmethod
    def resolve(cls, gateway: str | None, token: str | None) -> Settings:
        data = load_file(config_path())
        return cls(
            gateway=gateway
            or os.environ.get("HEARTH_GATEWAY")
            or str(data.get("gateway") or DEFAULT_GATEWAY),
            token=token or os.environ.get("HEARTH_TOKEN") or str(data.get("token") or ""),
            ca_file=str(data.get("ca_file") or ""),
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel(self) -> grpc.Channel:
        if self.ca_file:
            creds = grpc.ssl_channel_credentials(Path(self.ca_file).read_bytes())
            return grpc.secure_channel(self.gateway, creds)
        return grpc.insecure_channel(self.gateway)


HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: "set HEARTH_TOKEN or token: in {config}",
    grpc.StatusCode.PERMISSION_DENIED: "this needs an operator token",
}


def explain(exc: grpc.RpcError, settings: Settings) -> CliError:
    """A one-line message for a failed call, with a hint where one helps."""
    code = exc.code()
    details = exc.details() or ""
    if code is grpc.StatusCode.UNAVAILABLE and "backend" not in details:
        return CliError(f"cannot reach the gateway at {settings.gateway}: {details}")
    message = f"{code.name}: {details}"
    hint = HINTS.get(code)
    if hint:
        message += f" ({hint.format(config=config_path())})"
    return CliError(message)
