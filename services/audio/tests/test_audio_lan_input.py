"""What the LAN sends to a real hearth-audio: hostile SAP/SDP/RTP in a lab namespace.

The service runs alone in host ``hub`` (no station, no player: only its health monitor
listens); host ``lan`` plays a foreign device. Everything sent goes to 239.255.x.y inside
the lab's own namespaces.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from audio_fuzz_strategies import rtp_packet, sap_packet  # type: ignore[import-not-found]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth_lab import Host, Lab, lab_available
from hearth_testing import ServiceProcess, metric_value, scrape, wait_for
from hearth_testing.figures import record

pytestmark = [pytest.mark.lab]

GRPC_PORT = 50062
METRICS_PORT = 9162
ALPHA, BETA, GAMMA = "239.255.0.1", "239.255.0.2", "239.255.0.3"  # streams' groups, port 46000
# The bound stated in audio.proto (StreamHealth): one stream's health stays below this
# whatever the LAN sends; gRPC clients refuse messages above 4 MiB.
HEALTH_BOUND = 16 * 1024


@dataclass
class Lan:
    lab: Lab
    hub: Host
    lan: Host
    service: ServiceProcess
    stub: audio_pb2_grpc.AudioServiceStub
    metrics: str

    def send(self, script: str, *args: str) -> subprocess.Popen[Any]:
        return self.lan.popen(["python3", "-c", script, self.lan.ipv4, *args], log=True)


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"hearth_lab: {reason}")
    with Lab(prefix="al") as lab:
        hub, other = lab.add_host("hub"), lab.add_host("device")
        address = hub.expose()
        service = ServiceProcess(
            "audio",
            env={
                "HEARTH_AUDIO_GRPC_LISTEN": f"0.0.0.0:{GRPC_PORT}",
                "HEARTH_AUDIO_METRICS_LISTEN": f"0.0.0.0:{METRICS_PORT}",
                "HEARTH_AUDIO_STATE_DIR": str(lab.workdir / "state"),
                "HEARTH_AUDIO_MULTICAST_INTERFACE": "eth0",
            },
            prefix=hub.command([]),
            log_path=lab.workdir / "audio.log",
        ).start(timeout=30)
        try:
            with grpc.insecure_channel(f"{address}:{GRPC_PORT}") as channel:
                stub = audio_pb2_grpc.AudioServiceStub(channel)
                # alpha first: a stream whose refresh fails must not freeze the ones after it.
                for sid, group in (("alpha", ALPHA), ("beta", BETA), ("gamma", GAMMA)):
                    stub.CreateStream(
                        audio_pb2.CreateStreamRequest(
                            stream_id=sid,
                            stream=audio_pb2.Stream(group=group, port=46000, enabled=True),
                        )
                    )
                yield Lan(lab, hub, other, service, stub, f"{address}:{METRICS_PORT}")
        finally:
            service.stop()


def health(lan: Lan, sid: str) -> audio_pb2.StreamHealth:
    return lan.stub.GetStreamHealth(audio_pb2.GetStreamHealthRequest(name=f"streams/{sid}/health"))


# From the lan host: SAP announcements to ``group``:9875, each of a different foreign
# stream with a session name of ``size`` characters, ``count`` of them, again every second.
_FLOOD = """
import socket, struct, sys, time
me, group, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
packets = []
for i in range(count):
    name = (f"foreign-{i:04d}-\\x1b[31m" + "x" * size)[:size]
    sdp = (f"v=0\\r\\no=- {i} 1 IN IP4 {me}\\r\\ns={name}\\r\\n"
           f"c=IN IP4 239.254.{i // 250}.{i % 250 + 1}\\r\\nt=0 0\\r\\n"
           "m=audio 5004 RTP/AVP 10\\r\\n")
    packets.append(bytes([0x20, 0]) + struct.pack("!H", i) + socket.inet_aton(me)
                   + b"application/sdp\\0" + sdp.encode())
while True:
    for p in packets:
        s.sendto(p, (group, 9875))
        time.sleep(0.002)
    time.sleep(1)
"""

# From the lan host: RTP to ``group``:46000 (50/s) and, every second, a SAP announcement
# of that very stream whose rtpmap names a clock rate of ``digits`` digits.
_ABSURD_RATE = """
import socket, struct, sys, time
me, group, digits = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
sdp = (f"v=0\\r\\no=- 1 1 IN IP4 {me}\\r\\ns=absurd\\r\\nc=IN IP4 {group}\\r\\nt=0 0\\r\\n"
       "m=audio 46000 RTP/AVP 127\\r\\na=rtpmap:127 L16/" + "9" * digits + "/2\\r\\n")
sap = bytes([0x20, 0]) + struct.pack("!H", 7) + socket.inet_aton(me)
sap += b"application/sdp\\0" + sdp.encode()
seq, n = 0, 0
while True:
    seq = (seq + 1) % 65536
    s.sendto(struct.pack("!BBHII", 0x80, 127, seq, seq * 960, 0xABCD) + bytes(160),
             (group, 46000))
    if n % 50 == 0:
        s.sendto(sap, (group, 9875))
    n += 1
    time.sleep(0.02)
"""

# From the lan host: a plain RTP stream to ``group``:46000, 50 packets/s.
_RTP = """
import socket, struct, sys, time
me, group = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
seq = 0
while True:
    seq = (seq + 1) % 65536
    s.sendto(struct.pack("!BBHII", 0x80, 127, seq, seq * 960, 0x5EED) + bytes(160),
             (group, 46000))
    time.sleep(0.02)
"""


def test_hundreds_of_long_foreign_announcements_keep_health_small(lan: Lan) -> None:
    """300 foreign announcements with 16 000-character session names (4.8 MB of names)
    on gamma's group: before, GetStreamHealth grew past gRPC's 4 MiB and failed
    (RESOURCE_EXHAUSTED) and WatchAudio broke; now the table is bounded (oldest evicted,
    counted), names cut and neutralised, and the message stays below HEALTH_BOUND."""
    flood = lan.send(_FLOOD, GAMMA, "300", "16000")
    try:
        seen: list[int] = []

        def many_foreign() -> audio_pb2.StreamHealth | None:
            h = health(lan, "gamma")
            seen.append(h.ByteSize())
            return h if any("foreign" in c for c in h.conflicts) and len(seen) > 20 else None

        h = wait_for("foreign announcements reported", many_foreign, timeout=30, every=0.2)
        assert h is not None
        assert max(seen) < HEALTH_BOUND, f"StreamHealth grew to {max(seen)} bytes"
        assert all("\x1b" not in c for c in h.conflicts), h.conflicts
        assert any("not shown" in c for c in h.conflicts), h.conflicts
        evicted = metric_value(
            scrape(lan.metrics), "hearth_audio_table_evictions_total", table="foreign"
        )
        assert evicted is not None and evicted > 0
        # A watcher gets its first event (everything's health) and it is small too.
        call = lan.stub.WatchAudio(audio_pb2.WatchAudioRequest(), timeout=10)
        first = next(iter(call))
        call.cancel()
        assert first.kind == audio_pb2.AudioEvent.KIND_CURRENT
        assert first.ByteSize() < 2 * HEALTH_BOUND + 4096, first.ByteSize()
    finally:
        lan.lan.stop(flood)


def test_absurd_clock_rate_is_refused_and_other_streams_stay_fresh(lan: Lan) -> None:
    """An announcement of alpha with a 400-digit clock rate: before, every health refresh
    raised OverflowError at alpha, so beta's health (after it) froze and GetStreamHealth of
    alpha failed. Now the announcement is refused with a counted reason and both streams'
    health keeps refreshing."""
    absurd = lan.send(_ABSURD_RATE, ALPHA, "400")
    plain = lan.send(_RTP, BETA)
    try:
        wait_for("alpha's packets arrive", lambda: health(lan, "alpha").packets > 100)

        def refused() -> float | None:
            value = metric_value(
                scrape(lan.metrics), "hearth_audio_datagrams_rejected_total",
                reason="clock_rate",
            )  # fmt: skip
            return value if value else None

        wait_for("the announcement refused as clock_rate", refused, timeout=10)
        h = health(lan, "alpha")
        assert h.rejected.get("clock_rate", 0) > 0, h

        # The refresh loop (every second) still updates beta, which comes after alpha.
        def counted(sid: str) -> float:
            samples = scrape(lan.metrics)
            return metric_value(samples, "hearth_audio_rtp_packets_total", stream=sid) or 0.0

        start = {sid: counted(sid) for sid in ("alpha", "beta")}
        wait_for(
            "alpha's and beta's packet counters keep growing",
            lambda: all(counted(sid) > start[sid] + 50 for sid in start),
            timeout=15,
        )
        assert 0 <= health(lan, "alpha").jitter.ToNanoseconds() < 10**9
        # Logged, but at most once a minute per stream and reason (one announcement a second).
        wait_for("3 refusals", lambda: health(lan, "alpha").rejected["clock_rate"] >= 3)
        logged = [
            line
            for line in lan.service.output.splitlines()
            if "datagram refused" in line and "reason=clock_rate" in line
        ]
        assert len(logged) == 1, logged
        assert "9999999999" not in logged[0] or len(logged[0]) < 1000, logged
    finally:
        lan.lan.stop(absurd)
        lan.lan.stop(plain)


# From the lan host: datagrams read from stdin, one per line: "<group> <port> <hex>".
_RELAY = """
import socket, sys
me = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
for line in sys.stdin:
    group, port, data = line.split()
    s.sendto(bytes.fromhex(data), (group, int(port)))
    print("sent", flush=True)
"""

# Examples sent to the real process (each a batch of datagrams); a fuzz run raises it.
LAB_FUZZ_EXAMPLES = int(os.environ.get("HEARTH_FUZZ_LAB_EXAMPLES", "20"))


def test_generated_datagrams_to_a_real_process(lan: Lan) -> None:
    """A few batches of generated SAP/RTP datagrams (audio_fuzz_strategies) sent on
    alpha's group to the real hearth-audio while beta carries a clean stream: after each
    batch both streams' health answers and stays below HEALTH_BOUND; at the end the process
    is alive and beta's packets are still being counted by the refresh loop."""
    relay = lan.lan.popen(
        ["python3", "-u", "-c", _RELAY, lan.lan.ipv4],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    plain = lan.send(_RTP, BETA)
    assert relay.stdin is not None and relay.stdout is not None
    stdin, stdout = relay.stdin, relay.stdout

    def counted(sid: str) -> float:
        return metric_value(scrape(lan.metrics), "hearth_audio_rtp_packets_total", stream=sid) or 0

    @settings(max_examples=LAB_FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(st.tuples(st.booleans(), st.one_of(sap_packet(), rtp_packet())),
                    min_size=1, max_size=8))  # fmt: skip
    def batch(datagrams: list[tuple[bool, bytes]]) -> None:
        record("datagrams", "sap + rtp, sent to a real hearth-audio", {"tried": len(datagrams)})
        for is_sap, data in datagrams:
            if not data:
                continue  # an empty line cannot carry an empty datagram
            stdin.write(f"{ALPHA} {9875 if is_sap else 46000} {data.hex()}\n")
            stdin.flush()
            assert stdout.readline().strip() == "sent"
        for sid in ("alpha", "beta"):
            assert health(lan, sid).ByteSize() < HEALTH_BOUND

    try:
        wait_for("beta's packets counted", lambda: counted("beta") > 0, timeout=15)
        batch()
        before = counted("beta")
        wait_for("beta still counted", lambda: counted("beta") > before + 50, timeout=15)
        assert lan.service.proc is not None and lan.service.proc.poll() is None
    finally:
        stdin.close()
        lan.lan.stop(relay)
        lan.lan.stop(plain)
