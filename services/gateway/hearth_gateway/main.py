"""hearth-gateway: the front door."""

from __future__ import annotations

import grpc

from hearth.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from hearth_gateway.config import GatewayConfig
from hearth_runtime import Runtime, ServiceSpec, run_service


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    async def GetSystemStatus(
        self, request: gateway_pb2.GetSystemStatusRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.SystemStatus:
        backends = [
            gateway_pb2.Backend(name=name, address=address)
            for name, address in (
                ("wake", self.config.wake_address),
                ("audio", self.config.audio_address),
                ("ci", self.config.ci_address),
            )
        ]
        return gateway_pb2.SystemStatus(backends=backends, version="0.1.0")


async def setup(runtime: Runtime[GatewayConfig]) -> None:
    runtime.add_servicer(
        gateway_pb2_grpc.add_GatewayServicer_to_server,
        GatewayServicer(runtime.config),
        gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name,
    )


SPEC = ServiceSpec(name="gateway", config_cls=GatewayConfig, setup=setup)


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
