"""hearth-wake: wake sleeping machines on demand."""

from __future__ import annotations

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_runtime import ServiceSpec, run_service
from hearth_wake.app import WakeApp
from hearth_wake.config import WakeConfig
from hearth_wake.service import WakeServicer

SPEC = ServiceSpec(
    name="wake",
    config_cls=WakeConfig,
    app=WakeApp,
    servicer=WakeServicer,
    register=wake_pb2_grpc.add_WakeServiceServicer_to_server,
    service_name=wake_pb2.DESCRIPTOR.services_by_name["WakeService"].full_name,
)


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
