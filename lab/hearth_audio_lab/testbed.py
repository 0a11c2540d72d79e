"""A ready audio house in a lab: one station, two zones and the audio service.

Used by the tests (a module-scoped fixture), the benchmarks and anyone trying the service.

The station's PulseAudio already has a sink ``tv`` fed by an 880 Hz sine; the sink
``radio`` is created by the service when the stream is enabled, and MPD plays a 440 Hz
file into it. The service runs in its own host ``hub`` (like the house's hearth box) and
is reached over ``hub.expose()``.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from google.protobuf import field_mask_pb2

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth_audio_lab import labkit
from hearth_lab import Host, Lab
from hearth_runtime.ports import PORTS
from hearth_testing import ServiceProcess, wait_for

RATE = 48000
GRPC_PORT = PORTS["audio"].grpc
METRICS_PORT = PORTS["audio"].metrics


@dataclass
class AudioLab:
    lab: Lab
    station: Host
    hub: Host
    station_pulse: labkit.PulseDaemon
    zones: dict[str, labkit.PulseDaemon]
    mpd: labkit.MpdDaemon
    service: ServiceProcess
    stub: audio_pb2_grpc.AudioServiceStub
    metrics: str  # host:port of the service's /metrics
    grpc: str  # host:port of its gRPC server (audio and grpc.health.v1)

    def record(self, zone: str, seconds: float = 1.0) -> np.ndarray[Any, Any]:
        """What a zone's speakers play (its sink monitor), mono float samples."""
        pulse = self.zones[zone]
        argv = ["parec", "--server", pulse.unix_server, "-d", "speakers.monitor", "--raw"]
        argv += ["--format=s16le", "--channels=1", f"--rate={RATE}", "--latency-msec=20"]
        res = subprocess.run(
            pulse.host.command(["timeout", str(seconds), *argv]),
            capture_output=True,
            timeout=seconds + 10,
            env=pulse.env(),
        )
        data = res.stdout[: len(res.stdout) // 2 * 2]
        return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0

    @contextlib.contextmanager
    def steady_sinks(self, period_ms: float = 2.0) -> Iterator[None]:
        """Clock every zone's speakers and the radio sink in ``period_ms`` steps
        (:meth:`labkit.PulseDaemon.clock`) while the block runs."""
        sinks = [(p, "speakers.monitor") for p in self.zones.values()]
        sinks.append((self.station_pulse, "radio.monitor"))
        readers = [(pulse.host, pulse.clock(source, period_ms)) for pulse, source in sinks]
        try:
            yield
        finally:
            for host, proc in readers:
                host.stop(proc, timeout=2)


def tone_levels(samples: np.ndarray[Any, Any]) -> dict[int, float]:
    """Amplitude at 440 and 880 Hz (and overall RMS under key 0)."""
    if samples.size < RATE // 4:
        return {0: 0.0, 440: 0.0, 880: 0.0}
    x = samples[RATE // 10 :]  # skip the recorder's start
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) / x.size
    freqs = np.fft.rfftfreq(x.size, 1 / RATE)

    def band(f: float) -> float:
        return float(spectrum[(freqs > f - 10) & (freqs < f + 10)].max())

    return {0: float(np.sqrt(np.mean(x * x))), 440: band(440), 880: band(880)}


_COUNT_PACKETS = """
import socket, struct, sys, time
group, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((group, port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton(group) + socket.inet_aton("0.0.0.0"))
s.settimeout(0.2)
n, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    try:
        s.recv(2048)
        n += 1
    except socket.timeout:
        pass
print(n)
"""


def packets_on(host: Host, group: str, port: int, seconds: float) -> int:
    """How many datagrams to ``group:port`` arrive at ``host`` within ``seconds``."""
    res = host.run(["python3", "-c", _COUNT_PACKETS, group, str(port), str(seconds)], check=True)
    return int(res.stdout)


_INTRUDER = """
import socket, struct, sys, time
group, port, me, foreign = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
sdp = (f"v=0\\r\\no=- 1 1 IN IP4 {me}\\r\\ns=intruder\\r\\nc=IN IP4 {foreign}\\r\\n"
       "t=0 0\\r\\nm=audio 5004 RTP/AVP 10\\r\\n").encode()
sap = bytes([0x20, 0]) + struct.pack("!H", 0x4242) + socket.inet_aton(me)
sap += b"application/sdp\\0" + sdp
seq, n = 0, 0
while True:
    seq = (seq + 1) % 65536
    s.sendto(struct.pack("!BBHII", 0x80, 10, seq, seq * 441, 0x1234ABCD) + bytes(160),
             (group, port))
    if n % 25 == 0:
        s.sendto(sap, (group, 9875))
    n += 1
    time.sleep(0.02)
"""


def start_intruder(host: Host, group: str, port: int, foreign: str) -> subprocess.Popen[Any]:
    """From ``host``: RTP to ``group:port`` under another SSRC (50/s) and, on the group's
    SAP port, an announcement of a stream on ``foreign``:5004 (twice a second), until
    stopped with ``host.stop``."""
    return host.popen(["python3", "-c", _INTRUDER, group, str(port), host.ipv4, foreign])


@contextlib.contextmanager
def audio_lab(prefix: str = "au", env: dict[str, str] | None = None) -> Iterator[AudioLab]:
    """Build the lab, start PulseAudio x3, MPD and the service, create the two streams
    (radio, tv) and two zones (a, b); tear everything down on exit."""
    with Lab(prefix=prefix) as lab:
        station = lab.add_host("station")
        zone_hosts = {"a": lab.add_host("zonea"), "b": lab.add_host("zoneb")}
        hub = lab.add_host("hub")
        station_pulse = labkit.PulseDaemon(
            station,
            "station",
            [*labkit.station_script(["tv"]), "load-module module-sine sink=tv frequency=880"],
        ).start()
        zones = {
            name: labkit.PulseDaemon(
                host, f"zone{name}", labkit.zone_script(), realtime=True
            ).start()
            for name, host in zone_hosts.items()
        }
        music = lab.workdir / "music"
        labkit.write_tone(music / "a-440.flac", 440, seconds=60, title="A 440")
        labkit.write_tone(music / "b-440.flac", 440, seconds=60, title="B 440")
        mpd = labkit.MpdDaemon(station, station_pulse, "radio", music).start()
        address = hub.expose()
        service = ServiceProcess(
            "audio",
            env={
                "HEARTH_AUDIO_GRPC_LISTEN": f"0.0.0.0:{GRPC_PORT}",
                "HEARTH_AUDIO_METRICS_LISTEN": f"0.0.0.0:{METRICS_PORT}",
                "HEARTH_AUDIO_STATE_DIR": str(lab.workdir / "state"),
                "HEARTH_AUDIO_STATION_SERVER": station_pulse.server,
                "HEARTH_AUDIO_MPD_ADDRESS": mpd.address,
                "HEARTH_AUDIO_MULTICAST_INTERFACE": "eth0",
                "HEARTH_AUDIO_RECONCILE_INTERVAL_SECONDS": "1",
                "HEARTH_AUDIO_STALL_AFTER_SECONDS": "3",
                **(env or {}),
            },
            prefix=hub.command([]),
            log_path=lab.workdir / "audio.log",
        ).start(timeout=30)
        try:
            with grpc.insecure_channel(f"{address}:{GRPC_PORT}") as channel:
                stub = audio_pb2_grpc.AudioServiceStub(channel)
                _create_streams_and_zones(stub, zones)
                mpd.play_all()
                yield AudioLab(
                    lab, station, hub, station_pulse, zones, mpd, service, stub,
                    metrics=f"{address}:{METRICS_PORT}", grpc=f"{address}:{GRPC_PORT}",
                )  # fmt: skip
        finally:
            service.stop()
            mpd.stop()


def _create_streams_and_zones(
    stub: audio_pb2_grpc.AudioServiceStub, zones: dict[str, labkit.PulseDaemon]
) -> None:
    """Streams radio (MPD's sink) and tv (the 880 Hz sink), zones a and b; wait until the
    station sends both."""
    stub.CreateStream(
        audio_pb2.CreateStreamRequest(
            stream_id="radio",
            stream=audio_pb2.Stream(display_name="Radio", source="radio", enabled=True,
                                    player_output=True),
        )
    )  # fmt: skip
    stub.CreateStream(
        audio_pb2.CreateStreamRequest(
            stream_id="tv", stream=audio_pb2.Stream(display_name="TV", enabled=True)
        )
    )
    for name, pulse in zones.items():
        stub.CreateZone(
            audio_pb2.CreateZoneRequest(
                zone_id=name,
                zone=audio_pb2.Zone(display_name=f"Zone {name}", server=pulse.server),
            )
        )
    wait_for(
        "radio and tv sending",
        lambda: all(
            s.state == audio_pb2.STREAM_STATE_SENDING
            for s in stub.ListStreams(audio_pb2.ListStreamsRequest()).streams
        ),
    )


def baseline(al: AudioLab) -> None:
    """Zone a on radio, zone b on tv, both streams on, default latencies."""
    for sid in ("radio", "tv"):
        al.stub.EnableStream(audio_pb2.EnableStreamRequest(name=f"streams/{sid}"))
    for zone, sid in (("a", "radio"), ("b", "tv")):
        z = audio_pb2.Zone(name=f"zones/{zone}")
        z.latency.FromMilliseconds(200)
        mask = field_mask_pb2.FieldMask(paths=["latency"])
        al.stub.UpdateZone(audio_pb2.UpdateZoneRequest(zone=z, update_mask=mask))
        al.stub.SubscribeZone(
            audio_pb2.SubscribeZoneRequest(name=f"zones/{zone}", stream=f"streams/{sid}")
        )
