"""gRPC face of the wake service (skeleton: hosts are listed from the store)."""

from __future__ import annotations

import grpc

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_runtime.resources import paginate


class WakeServicer(wake_pb2_grpc.WakeServiceServicer):
    def __init__(self) -> None:
        self.hosts: list[wake_pb2.Host] = []

    async def ListHosts(
        self, request: wake_pb2.ListHostsRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.ListHostsResponse:
        page, token = paginate(self.hosts, request.page_size, request.page_token)
        return wake_pb2.ListHostsResponse(hosts=page, next_page_token=token)
