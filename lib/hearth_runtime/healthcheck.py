"""A container health probe that speaks grpc.health.v1: ``python -m hearth_runtime.healthcheck``.

Docker's HEALTHCHECK runs it inside the service's container::

    python -m hearth_runtime.healthcheck --env HEARTH_WAKE_GRPC_LISTEN 127.0.0.1:50061

It asks ``Check(service)`` (default ``""``, the whole server) and exits 0 only for SERVING;
1 for anything else (NOT_SERVING, unreachable, timeout), printing one line that says why.
``--env VAR`` makes it follow the address the service was configured with: a wildcard listen
address (``[::]:p``, ``0.0.0.0:p``) is probed on loopback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

_WILDCARDS = {"", "0.0.0.0", "::", "[::]", "*"}


def probe_address(listen: str) -> str:
    """The address to dial for a server listening on ``listen`` (wildcards -> loopback)."""
    if listen.startswith("unix:"):
        return listen
    host, _, port = listen.rpartition(":")
    if host in _WILDCARDS:
        host = "[::1]" if host in {"::", "[::]"} else "127.0.0.1"
    return f"{host}:{port}"


def check(address: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """Ask ``address`` whether ``service`` is SERVING; return (healthy, reason)."""
    try:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        return False, f"{address}: {code.name if code else 'error'}: {exc.details() or exc}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{address}: {status}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hearth_runtime.healthcheck")
    parser.add_argument("address", help="host:port to probe when --env is not set")
    parser.add_argument("--env", metavar="VAR", help="take the listen address from $VAR if set")
    parser.add_argument("--service", default="", help='service name to check (default "")')
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    listen = os.environ.get(args.env, "") if args.env else ""
    address = probe_address(listen) if listen else args.address
    healthy, reason = check(address, args.service, args.timeout)
    print(reason, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
