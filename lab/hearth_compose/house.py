"""The demo house inside the lab stack, set up through the gateway as a person would.

wake's devbox is declared in the compose file (HEARTH_WAKE_HOSTS); this adds what is
created over the API: two streams on the station ("radio": MPD's 440 Hz pieces, "tv": an
880 Hz tone), two zones (zone-a, zone-b) and the default CI watch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import grpc

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_compose.stack import OPERATOR_TOKEN, StackError
from hearth_testing import wait as polling

T = TypeVar("T")

STREAMS = {"radio": ("Radio (MPD)", "radio", True), "tv": ("TV", "tv", False)}
ZONES = ("zone-a", "zone-b")
TONES = {"radio": 440.0, "tv": 880.0}
CI_WATCH = "mine"
CI_USER = "danms"


Metadata = tuple[tuple[str, str | bytes], ...]


def credentials() -> Metadata:
    """gRPC metadata carrying the lab's operator token."""
    return (("authorization", f"Bearer {OPERATOR_TOKEN}"),)


def _create(method: Any, request: Any, timeout: float) -> None:
    """Create something; one that already exists (a second `make demo-compose`) is fine."""
    try:
        method(request, metadata=credentials(), timeout=timeout)
    except grpc.RpcError as exc:
        if not (isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.ALREADY_EXISTS):
            raise


def populate(channel: grpc.Channel, timeout: float = 30) -> None:
    """Streams, zones and the CI watch, created through the gateway's gRPC front door."""
    audio = audio_pb2_grpc.AudioServiceStub(channel)
    for stream_id, (title, sink, player) in STREAMS.items():
        stream = audio_pb2.Stream(display_name=title, source=sink, player_output=player)
        request = audio_pb2.CreateStreamRequest(stream_id=stream_id, stream=stream)
        _create(audio.CreateStream, request, timeout)
        audio.EnableStream(
            audio_pb2.EnableStreamRequest(name=f"streams/{stream_id}"),
            metadata=credentials(),
            timeout=timeout,
        )
    for zone_id in ZONES:
        zone = audio_pb2.Zone(
            display_name=zone_id.replace("-", " ").title(),
            server=f"tcp:{zone_id}:4713",
            sink="speakers",
        )
        _create(audio.CreateZone, audio_pb2.CreateZoneRequest(zone_id=zone_id, zone=zone), timeout)
    ci = ci_pb2_grpc.CiServiceStub(channel)
    watch = ci_pb2.Watch(
        display_name=f"{CI_USER}'s changes, stars and nova",
        filter=ci_pb2.Filter(
            user=CI_USER, owners=[CI_USER], starred=True, projects=["openstack/nova"]
        ),
    )
    watch.refresh_interval.FromSeconds(5)
    _create(ci.CreateWatch, ci_pb2.CreateWatchRequest(watch_id=CI_WATCH, watch=watch), timeout)


def wait_for(check: Callable[[], T | None], within: float, what: str, every: float = 0.5) -> T:
    """:func:`hearth_testing.wait_for`, also riding out gRPC, socket and exec errors (a
    recording that found no PulseAudio yet) while the stack settles (the last one is named
    if time runs out)."""
    errors: list[Exception] = []

    def attempt() -> T | None:
        try:
            return check()
        except (grpc.RpcError, OSError, StackError) as exc:
            errors[:] = [exc]
            return None

    try:
        return cast(T, polling.wait_for(what, attempt, timeout=within, every=every))
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last error: {errors[0] if errors else None}") from None
