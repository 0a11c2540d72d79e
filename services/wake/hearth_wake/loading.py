"""Hosts from the store and from the YAML ``hosts:`` list, validated like API requests.

A stored row (written by an older version or edited by hand) or a declared entry that does
not pass the API's rules is *quarantined*: it is not watched, but it is kept, shown (state
QUARANTINED with the reason naming the field to fix) and can be fixed with UpdateHost or
removed with DeleteHost. Nothing here raises for one bad host: whatever goes wrong while
reading one is that host's quarantine reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from hearth.wake.v1 import wake_pb2
from hearth_runtime import HearthError, InvalidArgument
from hearth_runtime.text import neutral
from hearth_runtime.timeconv import check_seconds, duration_from_seconds
from hearth_wake.config import HostEntry
from hearth_wake.hosts import (
    DURATION_RANGES,
    DURATIONS,
    ORIGINS,
    HostSpec,
    spec_from_proto,
)
from hearth_wake.sender import Method

# How much of a quarantined host's stored text is shown back (the row may hold anything).
SHOWN_CHARS = 256
REASON_CHARS = 500


@dataclass(frozen=True)
class Quarantined:
    """A host that could not be loaded: what could be read of it, and why."""

    id: str
    reason: str
    origin: str
    view: wake_pb2.Host
    """The readable part of its settings (for GetHost/ListHosts and UpdateHost's base)."""
    password: bytes = b""
    create_time: float = 0.0

    @property
    def name(self) -> str:
        return f"hosts/{self.id}"

    def to_proto(self) -> wake_pb2.Host:
        msg = wake_pb2.Host()
        msg.CopyFrom(self.view)
        msg.name = self.name
        msg.state = wake_pb2.HOST_STATE_QUARANTINED
        msg.quarantine_reason = self.reason
        msg.origin = ORIGINS.get(self.origin, wake_pb2.HOST_ORIGIN_UNSPECIFIED)
        msg.has_secureon_password = bool(self.password)
        return msg


def reason_of(exc: BaseException) -> str:
    """A one-line reason for a quarantine (an InvalidArgument's text names the field)."""
    text = exc.message if isinstance(exc, HearthError) else f"{type(exc).__name__}: {exc}"
    return neutral(text, REASON_CHARS)


# ---------------------------------------------------------------------------- the store
def _str(data: dict[str, Any], key: str, field: str, strict: bool) -> str:
    value = data.get(key, "")
    if isinstance(value, str):
        return value if strict else value[:SHOWN_CHARS]
    if strict:
        raise InvalidArgument(field, f"stored value {value!r:.80} is not a text")
    return ""


def _strs(data: dict[str, Any], key: str, field: str, strict: bool) -> list[str]:
    value = data.get(key, [])
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value if strict else [v[:SHOWN_CHARS] for v in value[:64]]
    if strict:
        raise InvalidArgument(field, "stored value is not a list of texts")
    return []


def proto_from_stored(data: Any, *, strict: bool = True) -> tuple[wake_pb2.Host, bytes]:
    """A stored row's JSON as a Host message and its password. ``strict``: a value of the
    wrong type is INVALID_ARGUMENT naming ``host.<field>``; otherwise it is left out."""
    if not isinstance(data, dict):
        if strict:
            raise InvalidArgument("host", "stored settings are not a JSON object")
        return wake_pb2.Host(), b""
    msg = wake_pb2.Host(
        mac=_str(data, "mac", "host.mac", strict),
        ipv4=_str(data, "ipv4", "host.ipv4", strict),
        ipv6=_str(data, "ipv6", "host.ipv6", strict),
        interface=_str(data, "interface", "host.interface", strict),
        only_from=_strs(data, "only_from", "host.only_from", strict),
        ignore_from=_strs(data, "ignore_from", "host.ignore_from", strict),
    )
    methods = data.get("methods", [])
    if isinstance(methods, list) and all(isinstance(m, int) for m in methods):
        # Out-of-range numbers are kept so that validation names them.
        msg.send_methods.extend(m for m in methods[:64] if 0 <= m < 2**31)
        if strict and len(msg.send_methods) != len(methods):
            raise InvalidArgument("host.send_methods", "stored value has invalid numbers")
    elif strict:
        raise InvalidArgument("host.send_methods", "stored value is not a list of numbers")
    password = b""
    hexed = data.get("password", "")
    try:
        password = bytes.fromhex(hexed) if isinstance(hexed, str) else b""
        if password and len(password) not in (4, 6):
            raise ValueError("length")
        if strict and not isinstance(hexed, str):
            raise ValueError("type")
    except ValueError:
        if strict:
            raise InvalidArgument(
                "host.secureon_password", "stored password is not 4 or 6 bytes of hex"
            ) from None
        password = b""
    for key in DURATIONS:
        if key not in data:
            continue
        value = data[key]
        field = f"host.{key}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            if strict:
                raise InvalidArgument(field, "stored value is not a number of seconds")
            continue
        if strict:
            low, high = DURATION_RANGES[key]
            check_seconds(field, float(value), low, high)
        elif not (math.isfinite(value) and abs(value) < 1e10):
            continue
        getattr(msg, key).CopyFrom(duration_from_seconds(float(value)))
    return msg, password


def _time(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) and 0 <= out < 1e11 else 0.0


def load_stored(host_id: str, raw: Any, created: Any, updated: Any) -> HostSpec | Quarantined:
    """One ``hosts`` row as a HostSpec, or Quarantined with the reason."""
    origin = "api"
    data: Any = None
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else None
        if isinstance(data, dict) and data.get("origin") in ("api", "config"):
            origin = data["origin"]
        msg, password = proto_from_stored(data)
        spec = spec_from_proto(
            host_id,
            msg,
            prefix="host",
            id_field="name",
            origin=origin,
            now=_time(updated),
            live=False,
        )
        return replace(
            spec, password=password, create_time=_time(created), update_time=_time(updated)
        )
    except Exception as exc:  # one bad row is that row's problem, never the service's
        try:
            view, password = proto_from_stored(data, strict=False)
        except Exception:
            view, password = wake_pb2.Host(), b""
        return Quarantined(
            id=str(host_id),
            reason=reason_of(exc),
            origin=origin,
            view=view,
            password=password,
            create_time=_time(created),
        )


# ------------------------------------------------------------------------- the config
def entry_to_proto(entry: HostEntry, field: str) -> wake_pb2.Host:
    msg = wake_pb2.Host(
        mac=entry.mac,
        ipv4=entry.ipv4,
        ipv6=entry.ipv6,
        interface=entry.interface,
        secureon_password=entry.secureon_password,
        only_from=entry.only_from,
        ignore_from=entry.ignore_from,
    )
    for i, text in enumerate(entry.send_methods):
        try:
            msg.send_methods.append(Method.parse(text).value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise InvalidArgument(f"{field}.send_methods[{i}]", str(exc)) from None
    for key in DURATIONS:
        value = getattr(entry, key)
        if value is not None:
            low, high = DURATION_RANGES[key]
            check_seconds(f"{field}.{key}", value, low, high)
            getattr(msg, key).CopyFrom(duration_from_seconds(value))
    return msg


def entry_id(raw: Any, index: int) -> str:
    """The id a declared entry is shown under (its name if it has a text one)."""
    name = raw.get("name") if isinstance(raw, dict) else None
    if isinstance(name, str) and name:
        return neutral(name, 63)
    return f"hosts-{index}"


def load_declared(raw: Any, index: int, now: float) -> HostSpec | Quarantined:
    """Entry ``index`` of the YAML ``hosts:`` list, or Quarantined naming ``hosts[i].field``."""
    field = f"hosts[{index}]"
    try:
        try:
            entry = HostEntry.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidArgument(f"{field}.{where}" if where else field, first["msg"]) from None
        msg = entry_to_proto(entry, field)
        return spec_from_proto(
            entry.name,
            msg,
            prefix=field,
            id_field=f"{field}.name",
            origin="config",
            now=now,
            live=False,
        )
    except Exception as exc:
        view = wake_pb2.Host()
        if isinstance(raw, dict):
            view, _ = proto_from_stored(
                {k: v for k, v in raw.items() if k != "send_methods"}, strict=False
            )
        return Quarantined(
            id=entry_id(raw, index), reason=reason_of(exc), origin="config", view=view
        )
