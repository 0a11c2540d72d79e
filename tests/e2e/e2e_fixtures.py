"""The demo house (every real service in a lab, the gateway in front) for end-to-end tests.

One house per test module (building it takes seconds); tests talk to it only through the
gateway, except where they check what really happened behind it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from hearth_client.tokens import hash_token
from hearth_demo.house import PORTS, House
from hearth_demo.start import start_house
from hearth_lab import Lab, lab_available

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


@pytest.fixture(scope="module")
def e2e() -> Iterator[E2E]:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"hearth_lab: {reason}")
    with Lab(prefix="ee") as lab:
        house = start_house(lab, env=FAST)
        world = E2E(house)
        try:
            yield world
        finally:
            world.channel.close()
            house.stop()


def rpc_error(fn: Callable[..., Any], *args: Any, **kw: Any) -> grpc.RpcError:
    try:
        fn(*args, **kw)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"{fn} did not fail")
