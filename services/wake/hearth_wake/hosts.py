"""A host's declared settings (:class:`HostSpec`): validated once, from gRPC or YAML."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from hearth.wake.v1 import wake_pb2
from hearth_runtime import InvalidArgument
from hearth_runtime.resources import check_id
from hearth_runtime.timeconv import duration_from_seconds, duration_seconds, timestamp_from_epoch
from hearth_wake import netif
from hearth_wake.addr import (
    RequesterSet,
    mac_bytes,
    parse_ipv4,
    parse_ipv6,
    parse_mac,
    parse_secureon,
)
from hearth_wake.sender import DEFAULT_METHODS, Method

# Where a host comes from: "api" or "config" here and in the database, HostOrigin outside.
ORIGINS = {"api": wake_pb2.HOST_ORIGIN_API, "config": wake_pb2.HOST_ORIGIN_CONFIG}

DEFAULTS = {"alive_timeout": 90.0, "wake_timeout": 60.0, "retry_interval": 2.0, "cooldown": 30.0}
DURATIONS = tuple(DEFAULTS)
# Accepted range of each duration (seconds), as documented in wake.proto. The floors keep
# every schedule moving (a 1 ns retry interval once hung the event loop); the ceilings keep
# a typo from silencing a host for years.
DURATION_RANGES = {
    "alive_timeout": (1.0, 7 * 86400.0),
    "wake_timeout": (1.0, 3600.0),
    "retry_interval": (0.1, 600.0),
    "cooldown": (0.1, 86400.0),
}
MAX_SEND_METHODS = 8
# Hosts watched at most. Each adds ~27 instructions to its interface's kernel filter, and
# the kernel refuses filters over 4096 (BPF_MAXINSNS): past ~150 hosts one more would leave
# the whole interface unwatched. Compiling the filter (on the event loop) also grows with it.
MAX_HOSTS = 100
IFNAMSIZ = 16  # Linux: names are at most IFNAMSIZ - 1 bytes
# What UpdateHost may change (the rest is output only or the identity).
UPDATABLE = (
    "mac",
    "ipv4",
    "ipv6",
    "interface",
    "send_methods",
    "secureon_password",
    "only_from",
    "ignore_from",
    *DURATIONS,
)


@dataclass(frozen=True)
class HostSpec:
    id: str
    mac: str
    ipv4: str
    ipv6: str = ""
    interface: str = ""
    methods: tuple[Method, ...] = DEFAULT_METHODS
    password: bytes = b""
    only_from: tuple[str, ...] = ()
    ignore_from: tuple[str, ...] = ()
    alive_timeout: float = DEFAULTS["alive_timeout"]
    wake_timeout: float = DEFAULTS["wake_timeout"]
    retry_interval: float = DEFAULTS["retry_interval"]
    cooldown: float = DEFAULTS["cooldown"]
    origin: str = "api"
    create_time: float = 0.0
    update_time: float = 0.0
    # Derived, for the sniffer's hot path.
    mac_raw: bytes = field(default=b"", compare=False, repr=False)
    allowed: RequesterSet = field(default=RequesterSet(frozenset(), ()), compare=False)
    excluded: RequesterSet = field(default=RequesterSet(frozenset(), ()), compare=False)
    effective_interface: str = field(default="", compare=False)
    """``interface``, or the one the routing table uses for ``ipv4`` (resolved once)."""

    def __post_init__(self) -> None:
        if not self.effective_interface:
            resolved = self.interface or netif.route_interface(self.ipv4) or ""
            object.__setattr__(self, "effective_interface", resolved)
        object.__setattr__(self, "mac_raw", mac_bytes(self.mac))
        object.__setattr__(self, "allowed", RequesterSet.parse("only_from", self.only_from))
        object.__setattr__(self, "excluded", RequesterSet.parse("ignore_from", self.ignore_from))

    @property
    def name(self) -> str:
        return f"hosts/{self.id}"

    def same_settings(self, other: HostSpec) -> bool:
        skip = {"create_time", "update_time", "origin"}
        return all(
            getattr(self, k) == getattr(other, k)
            for k in self.__dataclass_fields__
            if k not in skip and self.__dataclass_fields__[k].compare
        )

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        return {
            "mac": self.mac,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "interface": self.interface,
            "methods": [m.value for m in self.methods],
            "password": self.password.hex(),
            "only_from": list(self.only_from),
            "ignore_from": list(self.ignore_from),
            **{k: getattr(self, k) for k in DURATIONS},
            "origin": self.origin,
        }

    # ------------------------------------------------------------------------ proto
    def to_proto(self) -> wake_pb2.Host:
        msg = wake_pb2.Host(
            name=self.name,
            mac=self.mac,
            ipv4=self.ipv4,
            ipv6=self.ipv6,
            interface=self.interface,
            send_methods=[m.value for m in self.methods],  # type: ignore[misc]
            only_from=list(self.only_from),
            ignore_from=list(self.ignore_from),
            has_secureon_password=bool(self.password),
            effective_interface=self.effective_interface,
            origin=ORIGINS[self.origin],
        )
        for key in DURATIONS:
            getattr(msg, key).CopyFrom(duration_from_seconds(getattr(self, key)))
        msg.create_time.CopyFrom(timestamp_from_epoch(self.create_time))
        msg.update_time.CopyFrom(timestamp_from_epoch(self.update_time))
        return msg


def check_interface_name(field: str, name: str) -> str:
    """A Linux interface name (``dev_valid_name``: 1 to IFNAMSIZ-1 bytes, not "." or "..",
    no "/", ":" or whitespace), printable ASCII only."""
    if not name:
        raise InvalidArgument(field, "must not be empty")
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) >= IFNAMSIZ:
        raise InvalidArgument(field, f"is {len(raw)} bytes long; at most {IFNAMSIZ - 1}")
    if name in (".", "..") or any(c in "/:" or not (" " < c <= "~") for c in name):
        raise InvalidArgument(
            field, f"{name!r} is not an interface name (printable ASCII, no '/', ':' or space)"
        )
    return name


def spec_from_proto(
    host_id: str,
    msg: wake_pb2.Host,
    *,
    prefix: str = "host",
    id_field: str = "host_id",
    base: HostSpec | None = None,
    origin: str = "api",
    now: float | None = None,
    live: bool = True,
) -> HostSpec:
    """Validate ``msg`` into a HostSpec (errors name ``<prefix>.<field>``).

    With ``base`` (an update), a field left empty in ``msg`` keeps the base's value for the
    password; everything else comes from ``msg`` (the caller applied the update mask).
    With ``live`` (a request), the interface must exist here and route to the host; a stored
    host is loaded without that (an interface that is missing for now is a health matter,
    reported by the sniffer monitor, not a reason to quarantine the host).
    """
    now = time.time() if now is None else now
    check_id(f"{prefix}.name" if base else id_field, host_id)
    if not msg.mac:
        raise InvalidArgument(f"{prefix}.mac", "is required")
    if not msg.ipv4:
        raise InvalidArgument(f"{prefix}.ipv4", "is required")
    mac = parse_mac(f"{prefix}.mac", msg.mac)
    ipv4 = parse_ipv4(f"{prefix}.ipv4", msg.ipv4)
    ipv6 = parse_ipv6(f"{prefix}.ipv6", msg.ipv6) if msg.ipv6 else ""
    if msg.interface:
        check_interface_name(f"{prefix}.interface", msg.interface)
        if live and not netif.exists(msg.interface):
            raise InvalidArgument(f"{prefix}.interface", f"no interface {msg.interface!r} here")
    methods = _methods(f"{prefix}.send_methods", msg.send_methods)
    password = base.password if base else b""
    if msg.secureon_password:
        password = parse_secureon(f"{prefix}.secureon_password", msg.secureon_password)
    only_from = tuple(msg.only_from)
    ignore_from = tuple(msg.ignore_from)
    RequesterSet.parse(f"{prefix}.only_from", only_from)
    RequesterSet.parse(f"{prefix}.ignore_from", ignore_from)
    durations = {}
    for key in DURATIONS:
        if msg.HasField(key):  # type: ignore[arg-type]
            low, high = DURATION_RANGES[key]
            durations[key] = duration_seconds(f"{prefix}.{key}", getattr(msg, key), low, high)
        else:
            durations[key] = DEFAULTS[key]
    spec = HostSpec(
        id=host_id,
        mac=mac,
        ipv4=ipv4,
        ipv6=ipv6,
        interface=msg.interface,
        methods=methods,
        password=password,
        only_from=only_from,
        ignore_from=ignore_from,
        origin=base.origin if base else origin,
        create_time=base.create_time if base else now,
        update_time=now,
        alive_timeout=durations["alive_timeout"],
        wake_timeout=durations["wake_timeout"],
        retry_interval=durations["retry_interval"],
        cooldown=durations["cooldown"],
    )
    if live and not spec.effective_interface:
        raise InvalidArgument(
            f"{prefix}.interface", f"no route to {ipv4} here: name the interface to use"
        )
    return spec


def _methods(field_name: str, values: Iterable[int]) -> tuple[Method, ...]:
    out: list[Method] = []
    values = list(values)
    if len(values) > MAX_SEND_METHODS:
        raise InvalidArgument(field_name, f"has {len(values)} entries; at most {MAX_SEND_METHODS}")
    for i, value in enumerate(values):
        try:
            method = Method(value)
        except ValueError:
            raise InvalidArgument(f"{field_name}[{i}]", f"{value} is not a send method") from None
        if method not in out:
            out.append(method)
    return tuple(out) or DEFAULT_METHODS


def with_times(spec: HostSpec, created: float, updated: float) -> HostSpec:
    return replace(spec, create_time=created, update_time=updated)
