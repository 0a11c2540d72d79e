"""Settings of the gateway (env prefix HEARTH_GATEWAY_).

Tokens are stored as SHA-256 hashes of the bearer token (``hearth token new`` prints a token
and the line to paste here). Tokens are long random strings, so a fast hash is enough: there
is nothing to brute-force, and the hash keeps a leaked config file from being a key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, field_validator
from pydantic_settings import SettingsConfigDict

from hearth_gateway.policy import parse_rate
from hearth_runtime import ServiceConfig, ports
from hearth_runtime.config import _check_listen

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TokenConfig(BaseModel):
    """One bearer token: who it belongs to, its role and the SHA-256 hex of the token."""

    name: str
    role: Literal["viewer", "operator"]
    sha256: str

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SHA256.match(value):
            raise ValueError("must be the 64-hex-digit SHA-256 of the token")
        return value


class GatewayConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="HEARTH_GATEWAY_", extra="forbid")

    grpc_listen: str = ports.grpc_listen(ports.GATEWAY)
    metrics_listen: str = ports.metrics_listen(ports.GATEWAY)
    http_listen: str = f"0.0.0.0:{ports.HTTP_PORT}"
    state_dir: Path = Path("/var/lib/hearth/gateway")
    wake_address: str = ports.local_address("wake")
    audio_address: str = ports.local_address("audio")
    ci_address: str = ports.local_address("ci")

    tokens: list[TokenConfig] = []
    """Bearer tokens (hashed) with their roles."""
    anonymous_read: bool = False
    """Whether reading (List/Get/Watch) works without a token."""
    rate_limits: dict[str, str] = {}
    """Overrides of the per-caller call rates the contracts declare (each rpc's
    ``hearth.auth.v1.policy`` option, e.g. WakeHost's "10/min"), by full method name
    ("service/Method": "N/min"; "0/min" switches a method off)."""
    cors_origins: list[str] = []
    """Origins allowed to call the HTTP face from a browser ("*" = any); empty = same origin."""
    tls_cert_file: Path | None = None
    """With tls_key_file: serve HTTPS, and gRPC with TLS on grpc_tls_listen (by the same front
    door as grpc_listen: the same rules and rate buckets)."""
    tls_key_file: Path | None = None
    grpc_tls_listen: str = f"[::]:{ports.GRPC_TLS_PORT}"
    grpc_front: Literal["auto", "edge", "python"] = "auto"
    """Who serves grpc_listen: "edge" (hearth-edge, the Rust forwarder: a fraction of the
    latency), "python" (grpc-python in this process), "auto" (the edge if it is installed)."""
    edge_binary: str = "hearth-edge"
    """The edge's executable: a path, or a name looked up on PATH and beside Python."""
    check_interval_seconds: float = 2.0
    """How often each backend's health, version and round-trip time are checked."""
    http_timeout_seconds: float = 60.0
    """Deadline of an HTTP call to a unary method (streams have none)."""
    http_header_timeout_seconds: float = 10.0
    """An HTTP request's line and headers must arrive within this many seconds of their
    first byte, else the connection is closed (slow clients cannot hold connections)."""
    http_idle_timeout_seconds: float = 60.0
    """An idle keep-alive HTTP connection is closed after this many seconds."""
    http_max_connections: int = 1024
    """Open HTTP connections at most (SSE streams included); the next one is answered 503."""
    http_max_body_bytes: int = 256 * 1024
    """Largest HTTP request body (413 beyond)."""
    http_max_url_bytes: int = 8190
    """Longest HTTP request line (414 beyond)."""
    http_max_header_bytes: int = 8190
    """Longest HTTP request header (431 beyond; at most 100 headers)."""
    allowed_hosts: list[str] = []
    """Host names the HTTP face answers for (the Host header; anything else is refused with
    403, which stops DNS rebinding). Empty: localhost and *.localhost, this machine's host
    name and fully qualified name, and any IP address literal. "*" allows every name;
    "*.example.org" a domain and its subdomains."""

    @field_validator("http_listen", "grpc_tls_listen")
    @classmethod
    def _http_listen(cls, value: str) -> str:
        return _check_listen(value)

    @field_validator("rate_limits")
    @classmethod
    def _rates(cls, value: dict[str, str]) -> dict[str, str]:
        for rate in value.values():
            parse_rate(rate)
        return value

    @field_validator(
        "check_interval_seconds",
        "http_timeout_seconds",
        "http_header_timeout_seconds",
        "http_idle_timeout_seconds",
        "http_max_connections",
        "http_max_body_bytes",
        "http_max_url_bytes",
        "http_max_header_bytes",
    )
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    def backend_addresses(self) -> dict[str, str]:
        return {name: str(getattr(self, f"{name}_address")) for name in ports.BACKENDS}
