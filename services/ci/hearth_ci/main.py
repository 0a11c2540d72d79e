"""hearth-ci."""

from __future__ import annotations

import grpc

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci.config import CiConfig
from hearth_runtime import Runtime, ServiceSpec, run_service
from hearth_runtime.resources import paginate


class CiServiceServicer(ci_pb2_grpc.CiServiceServicer):
    async def ListWatches(
        self, request: ci_pb2.ListWatchesRequest, context: grpc.aio.ServicerContext
    ) -> ci_pb2.ListWatchesResponse:
        page, token = paginate(list[ci_pb2.Watch](), request.page_size, request.page_token)
        return ci_pb2.ListWatchesResponse(watches=page, next_page_token=token)


async def setup(runtime: Runtime[CiConfig]) -> None:
    runtime.add_servicer(
        ci_pb2_grpc.add_CiServiceServicer_to_server,
        CiServiceServicer(),  # type: ignore[abstract]  # skeleton
        ci_pb2.DESCRIPTOR.services_by_name["CiService"].full_name,
    )


SPEC = ServiceSpec(name="ci", config_cls=CiConfig, setup=setup)


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
