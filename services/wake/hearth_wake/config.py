"""Settings of the wake service (env prefix HEARTH_WAKE_)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import SettingsConfigDict

from hearth_runtime import ServiceConfig, ports


class HostEntry(BaseModel):
    """One host of the YAML ``hosts:`` list (durations in seconds)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    mac: str
    ipv4: str
    ipv6: str = ""
    interface: str = ""
    send_methods: list[str] = Field(default_factory=list)
    """Labels or enum names: udp9, udp7, 0x0842, udp9-limited, udp9-unicast."""
    secureon_password: str = ""
    only_from: list[str] = Field(default_factory=list)
    ignore_from: list[str] = Field(default_factory=list)
    alive_timeout: float | None = None
    wake_timeout: float | None = None
    retry_interval: float | None = None
    cooldown: float | None = None


# Accepted range (seconds) of the engine's settings.
SETTING_RANGES = {
    "probe_interval": (0.5, 3600.0),
    "unknown_timeout": (0.5, 600.0),
    "wake_grace": (0.0, 3600.0),
    "followup_window": (0.5, 86400.0),
}


class WakeConfig(ServiceConfig):
    model_config = SettingsConfigDict(env_prefix="HEARTH_WAKE_", extra="forbid")

    grpc_listen: str = ports.grpc_listen("wake")
    metrics_listen: str = ports.metrics_listen("wake")
    state_dir: Path = Path("/var/lib/hearth/wake")

    hosts: list[Any] = Field(default_factory=list)
    """Hosts declared in the config file (each a :class:`HostEntry`), merged into the store
    at start. Entries are validated one by one when the service starts: a bad entry is
    quarantined (shown, logged, not watched), it does not stop the service."""
    probe_interval: float = 30.0
    """Longest time between liveness probes of a host (seconds)."""
    unknown_timeout: float = 5.0
    """At start, a host that answers no probe for this long is asleep (seconds)."""
    wake_grace: float = 30.0
    """After a wake, the host is not declared asleep for at least this long (seconds)."""
    followup_window: float = 60.0
    """A woken host's requester must talk to it within this long, else a false wake."""
    icmp_probes: bool = True
    """Send ICMP echo requests besides ARP probes."""
    capture_realtime: bool = True
    """Run the capture thread at real-time priority when allowed (needs CAP_SYS_NICE)."""

    @field_validator(*SETTING_RANGES)
    @classmethod
    def _in_range(cls, value: float, info: Any) -> float:
        # The engine's schedules are derived from these: NaN, infinity or a value near zero
        # would stop them moving or make them spin.
        low, high = SETTING_RANGES[info.field_name]
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g} seconds")
        return value
