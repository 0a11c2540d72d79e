"""hearth-gateway: the front door (gRPC proxy, HTTP/JSON, web page, auth)."""

from __future__ import annotations

from hearth.gateway.v1 import gateway_pb2_grpc
from hearth_gateway.app import GatewayApp
from hearth_gateway.config import GatewayConfig
from hearth_gateway.service import SERVICE, GatewayServicer
from hearth_runtime import ServiceSpec, run_service

SPEC = ServiceSpec(
    name="gateway",
    config_cls=GatewayConfig,
    app=GatewayApp,
    servicer=GatewayServicer,
    register=gateway_pb2_grpc.add_GatewayServiceServicer_to_server,
    service_name=SERVICE,
)


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
