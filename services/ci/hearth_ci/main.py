"""hearth-ci: watches Zuul and Gerrit for my changes."""

from __future__ import annotations

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci.app import CiApp
from hearth_ci.config import CiConfig
from hearth_ci.service import CiServicer
from hearth_runtime import ServiceSpec, run_service

SPEC = ServiceSpec(
    name="ci",
    config_cls=CiConfig,
    app=CiApp,
    servicer=CiServicer,
    register=ci_pb2_grpc.add_CiServiceServicer_to_server,
    service_name=ci_pb2.DESCRIPTOR.services_by_name["CiService"].full_name,
)


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
