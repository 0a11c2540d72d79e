"""hearth-audio: patch streams to zones, watch their health and sync."""

from __future__ import annotations

from hearth.audio.v1 import audio_pb2_grpc
from hearth_audio.config import AudioConfig
from hearth_audio.service import SERVICE_NAME, Audio, AudioServicer
from hearth_runtime import Runtime, ServiceSpec, run_service


async def setup(runtime: Runtime[AudioConfig]) -> None:
    audio = Audio(runtime.config, runtime)
    runtime.add_servicer(
        audio_pb2_grpc.add_AudioServiceServicer_to_server, AudioServicer(audio), SERVICE_NAME
    )
    await audio.start()
    runtime.spawn(audio.health_loop, "audio-health")
    if audio.player is not None:
        runtime.spawn(audio.player.run, "audio-player")
    runtime.on_shutdown(audio.close)
    # Unknown until the station and the player answered: start NOT_SERVING, let them say.
    if runtime.config.station_server or audio.player is not None:
        await runtime.set_serving(False)


SPEC = ServiceSpec(name="audio", config_cls=AudioConfig, setup=setup)


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
