"""`make demo` part: a radio station and two zones, patched and playing.

prepare: station host with PulseAudio (sinks ``radio`` and ``tv``; an 880 Hz sine plays
into ``tv``) and MPD playing two generated pieces into ``radio``; zones ``kitchen`` and
``livingroom`` with PulseAudio reachable over TCP. populate: the two streams and the two
zones over gRPC (kitchen on radio, living room on tv).
"""

from __future__ import annotations

import grpc

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth_audio_lab import labkit
from hearth_demo.house import House

ZONES = ("kitchen", "livingroom")
_zone_daemons: dict[str, labkit.PulseDaemon] = {}


def prepare(house: House) -> None:
    lab = house.lab
    station = lab.add_host("station")
    pulse = labkit.PulseDaemon(
        station,
        "station",
        [*labkit.station_script(["radio", "tv"]), "load-module module-sine sink=tv frequency=880"],
    ).start()
    music = lab.workdir / "music"
    labkit.write_piece(music / "1-arpeggio.flac", [262, 330, 392, 523], 0.25, "Arpeggio in C")
    labkit.write_piece(music / "2-fifths.flac", [220, 330, 247, 370], 0.5, "Walking fifths")
    mpd = labkit.MpdDaemon(station, pulse, "radio", music).start()
    mpd.play_all()
    for name in ZONES:
        host = lab.add_host(name)
        _zone_daemons[name] = labkit.PulseDaemon(
            host, name, labkit.zone_script(), realtime=True
        ).start()
    house.env.update(
        {
            "HEARTH_AUDIO_STATION_SERVER": pulse.server,
            "HEARTH_AUDIO_MPD_ADDRESS": mpd.address,
            "HEARTH_AUDIO_MULTICAST_INTERFACE": house.hub.ifname,
        }
    )


def populate(house: House) -> None:
    with grpc.insecure_channel(house.address("audio")) as channel:
        stub = audio_pb2_grpc.AudioServiceStub(channel)
        for sid, title in (("radio", "Radio (MPD)"), ("tv", "TV (880 Hz)")):
            stub.CreateStream(
                audio_pb2.CreateStreamRequest(
                    stream_id=sid,
                    stream=audio_pb2.Stream(
                        display_name=title, enabled=True, player_output=sid == "radio"
                    ),
                ),
                timeout=15,
            )
        for name, stream in zip(ZONES, ("radio", "tv"), strict=True):
            stub.CreateZone(
                audio_pb2.CreateZoneRequest(
                    zone_id=name,
                    zone=audio_pb2.Zone(
                        display_name=name.replace("livingroom", "living room").title(),
                        server=_zone_daemons[name].server,
                        stream=f"streams/{stream}",
                    ),
                ),
                timeout=15,
            )
    kitchen = _zone_daemons["kitchen"]
    house.notes += [
        "audio: station (MPD -> radio, 880 Hz sine -> tv); kitchen plays radio, livingroom tv",
        '  patch: grpcurl -plaintext -d \'{"name":"zones/kitchen","stream":"streams/tv"}\' '
        f"{house.address('audio')} hearth.audio.v1.AudioService/SubscribeZone",
        "  listen to a zone (records what its speakers play; Ctrl-C stops):",
        f"    ip netns exec {kitchen.host.netns} env PULSE_RUNTIME_PATH={kitchen.dir} "
        f"parecord --server {kitchen.unix_server} -d speakers.monitor /tmp/kitchen.wav",
    ]
