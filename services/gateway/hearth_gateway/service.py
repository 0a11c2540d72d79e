"""The gateway's own API: the status of the house's backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc

from hearth.auth.v1 import policy_pb2
from hearth.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from hearth_gateway.auth import Principal
from hearth_gateway.proxy import token_of
from hearth_runtime.timeconv import timestamp_now

if TYPE_CHECKING:
    from hearth_gateway.app import GatewayApp

SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name
# A principal's role ("anonymous", "viewer", "operator") -> the contract's Role.
ROLES = {
    "anonymous": policy_pb2.ROLE_ANONYMOUS,
    "viewer": policy_pb2.ROLE_VIEWER,
    "operator": policy_pb2.ROLE_OPERATOR,
}


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, app: GatewayApp) -> None:
        self.catalog = app.catalog
        self.pool = app.pool
        self.authorizer = app.authorizer
        self.version = app.version
        self.rounds = app.rounds

    def _admit(self, name: str, context: grpc.aio.ServicerContext) -> Principal:
        method = self.catalog.methods[f"/{SERVICE}/{name}"]
        return self.authorizer.authorize(method, token_of(context.invocation_metadata()))

    def status(self, principal: Principal) -> gateway_pb2.SystemStatus:
        return gateway_pb2.SystemStatus(
            backends=[b.describe() for b in self.pool.backends.values()],
            version=self.version,
            time=timestamp_now(),
            role=ROLES.get(principal.role, policy_pb2.ROLE_UNSPECIFIED),
        )

    async def GetSystemStatus(
        self, request: gateway_pb2.GetSystemStatusRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.SystemStatus:
        return self.status(self._admit("GetSystemStatus", context))

    async def WatchSystemStatus(
        self, request: gateway_pb2.WatchSystemStatusRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.SystemStatus]:
        principal = self._admit("WatchSystemStatus", context)
        async with self.rounds.subscribe() as ticks:
            yield self.status(principal)
            async for _ in ticks:
                yield self.status(principal)
