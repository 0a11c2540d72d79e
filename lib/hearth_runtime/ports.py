"""The one table of hearth's services, ports and backend names.

Every default derives from it: the services' ``grpc_listen``/``metrics_listen``, the
gateway's backend addresses and its HTTP and TLS ports, the CLI's gateway address. Files
that cannot import Python (compose, Dockerfiles, config/local, Prometheus) are checked
against it by ``tests/runtime/test_ports_table.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ports:
    grpc: int
    metrics: int


GATEWAY = "gateway"
BACKENDS: tuple[str, ...] = ("wake", "audio", "ci")
"""The services behind the gateway, in the order it lists them."""
SERVICES: tuple[str, ...] = (GATEWAY, *BACKENDS)

PORTS: dict[str, Ports] = {
    "gateway": Ports(grpc=50051, metrics=9160),
    "wake": Ports(grpc=50061, metrics=9161),
    "audio": Ports(grpc=50062, metrics=9162),
    "ci": Ports(grpc=50063, metrics=9163),
}
HTTP_PORT = 8080
"""The gateway's web page and HTTP/JSON face."""
GRPC_TLS_PORT = 50443
"""The gateway's gRPC with TLS (when a certificate is configured)."""


def grpc_listen(service: str) -> str:
    """Where ``service`` serves gRPC by default (every address)."""
    return f"[::]:{PORTS[service].grpc}"


def metrics_listen(service: str) -> str:
    """Where ``service`` serves /metrics by default."""
    return f"0.0.0.0:{PORTS[service].metrics}"


def local_address(service: str, host: str = "localhost") -> str:
    """How a client on ``host`` reaches ``service``'s gRPC port."""
    return f"{host}:{PORTS[service].grpc}"
