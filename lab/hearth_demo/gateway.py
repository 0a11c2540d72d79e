"""The gateway part of `make demo`: an operator token and anonymous reading for the house.

``house.py`` already points the gateway at the backends and serves the web page on port
8080 of the hub; this adds a fresh operator token (printed, never stored unhashed) so the
newcomer can press Wake and patch zones, and lets anyone in the house read without one.
"""

from __future__ import annotations

import json

from hearth_client.tokens import hash_token, new_token
from hearth_demo.house import PORTS, House
from hearth_runtime.ports import HTTP_PORT


def prepare(house: House) -> None:
    token = new_token()
    house.env["HEARTH_GATEWAY_TOKENS"] = json.dumps(
        [{"name": "demo", "role": "operator", "sha256": hash_token(token)}]
    )
    house.env["HEARTH_GATEWAY_ANONYMOUS_READ"] = "true"
    house.env["HEARTH_GATEWAY_CHECK_INTERVAL_SECONDS"] = "1"
    gateway = f"{house.hub_address}:{PORTS['gateway'][0]}"
    house.notes.append(
        f"gateway  operator token {token}  (paste it into the web page, or: "
        f"HEARTH_TOKEN={token} hearth --gateway {gateway} status)"
    )
    house.notes.append(f"gateway  OpenAPI http://{house.hub_address}:{HTTP_PORT}/openapi.json")
