"""hearth-audio."""

from __future__ import annotations

import grpc

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth_audio.config import AudioConfig
from hearth_runtime import Runtime, ServiceSpec, run_service
from hearth_runtime.resources import paginate


class AudioServiceServicer(audio_pb2_grpc.AudioServiceServicer):
    async def ListStreams(
        self, request: audio_pb2.ListStreamsRequest, context: grpc.aio.ServicerContext
    ) -> audio_pb2.ListStreamsResponse:
        page, token = paginate(list[audio_pb2.Stream](), request.page_size, request.page_token)
        return audio_pb2.ListStreamsResponse(streams=page, next_page_token=token)


async def setup(runtime: Runtime[AudioConfig]) -> None:
    runtime.add_servicer(
        audio_pb2_grpc.add_AudioServiceServicer_to_server,
        AudioServiceServicer(),  # type: ignore[abstract]  # skeleton
        audio_pb2.DESCRIPTOR.services_by_name["AudioService"].full_name,
    )


SPEC = ServiceSpec(name="audio", config_cls=AudioConfig, setup=setup)


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
