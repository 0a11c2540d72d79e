"""hearth-audio: patch streams to zones, watch their health and sync."""

from __future__ import annotations

from hearth.audio.v1 import audio_pb2_grpc
from hearth_audio.app import AudioApp
from hearth_audio.config import AudioConfig
from hearth_audio.service import SERVICE_NAME, AudioServicer
from hearth_runtime import ServiceSpec, run_service

SPEC = ServiceSpec(
    name="audio",
    config_cls=AudioConfig,
    app=AudioApp,
    servicer=AudioServicer,
    register=audio_pb2_grpc.add_AudioServiceServicer_to_server,
    service_name=SERVICE_NAME,
)


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
