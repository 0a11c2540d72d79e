"""End-to-end helpers: tokens, the settings that make the house quick, the handle of a running
house; the fixture that builds it is in conftest.py.

Tests talk to the house only through the gateway, except where they check what really
happened behind it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc

from hearth_client.tokens import hash_token
from hearth_demo.house import PORTS, House

OPERATOR = "e2e-operator-token"
VIEWER = "e2e-viewer-token"

FAST = {
    "HEARTH_GATEWAY_CHECK_INTERVAL_SECONDS": "0.5",
    "HEARTH_GATEWAY_ANONYMOUS_READ": "false",
    "HEARTH_GATEWAY_TOKENS": json.dumps(
        [
            {"name": "olivia", "role": "operator", "sha256": hash_token(OPERATOR)},
            {"name": "victor", "role": "viewer", "sha256": hash_token(VIEWER)},
        ]
    ),
    "HEARTH_CI_DEFAULT_REFRESH_SECONDS": "1",
    "HEARTH_CI_MIN_REFRESH_SECONDS": "0.5",
    "HEARTH_WAKE_PROBE_INTERVAL": "1",
    "HEARTH_WAKE_UNKNOWN_TIMEOUT": "1.5",
    "HEARTH_WAKE_WAKE_GRACE": "1",
}


def auth(token: str = VIEWER) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class E2E:
    def __init__(self, house: House) -> None:
        self.house = house
        self.grpc = house.address("gateway")
        self.http = f"http://{house.hub_address}:8080"
        self.channel = grpc.insecure_channel(self.grpc)

    def direct(self, service: str) -> grpc.Channel:
        """A channel straight to a backend (to check what the gateway did)."""
        return grpc.insecure_channel(f"{self.house.hub_address}:{PORTS[service][0]}")


def rpc_error(fn: Callable[..., Any], *args: Any, **kw: Any) -> grpc.RpcError:
    try:
        fn(*args, **kw)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{fn} did not fail")
