"""Settings of the audio service (env prefix HEARTH_AUDIO_)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from hearth_runtime import ServiceConfig, ports


def check_pulse_server(value: str) -> str:
    """``tcp:host:port``, ``tcp:host`` or ``unix:/path``; raises ValueError otherwise."""
    if value.startswith("unix:") and len(value) > len("unix:/") and value[5] == "/":
        return value
    if value.startswith("tcp:"):
        rest = value[4:]
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = rest, "4713"
        host = host.strip("[]")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return value
    raise ValueError(f"{value!r} is not a PulseAudio server (tcp:host:port or unix:/path)")


class AudioConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="HEARTH_AUDIO_", extra="forbid")

    grpc_listen: str = ports.grpc_listen("audio")
    metrics_listen: str = ports.metrics_listen("audio")
    state_dir: Path = Path("/var/lib/hearth/audio")

    station_server: str = ""
    """The station's PulseAudio (``tcp:station:4713``); empty: streams cannot be sent."""
    mpd_address: str = ""
    """The station's MPD (``host:6600``); empty: no player control."""
    multicast_interface: str = ""
    """Interface the health monitor joins the stream groups on (empty: by routing table)."""
    group_pool: str = "239.255.0.0/16"
    """Where streams get their multicast group when none is given."""
    sender_loop: bool = False
    """Load module-rtp-send with loop=1 (needed when this service runs on the station)."""
    reconcile_interval_seconds: float = 2.0
    """How often every PulseAudio is compared with the desired state (events come sooner)."""
    retry_max_seconds: float = 30.0
    """Longest wait between attempts to reach an unreachable PulseAudio or MPD."""
    health_interval_seconds: float = 1.0
    """How often stream health is computed and sent to watchers."""
    stall_after_seconds: float = 8.0
    """A zone subscribed to a live stream without playing it this long is stalled."""
    resend_sap: bool = True
    """Re-send the stream's last SAP announcement after patching a zone (starts it at once)."""

    @field_validator("station_server")
    @classmethod
    def _station(cls, value: str) -> str:
        return check_pulse_server(value) if value else value

    @field_validator("mpd_address")
    @classmethod
    def _mpd(cls, value: str) -> str:
        if value and not value.startswith("/"):
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{value!r} is not host:port (or a unix socket path)")
        return value

    @field_validator("group_pool")
    @classmethod
    def _pool(cls, value: str) -> str:
        net = ipaddress.IPv4Network(value)
        if not net.is_multicast:
            raise ValueError(f"{value!r} is not a multicast network")
        return value

    @field_validator(
        "reconcile_interval_seconds",
        "retry_max_seconds",
        "health_interval_seconds",
        "stall_after_seconds",
    )
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value
