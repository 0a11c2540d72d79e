"""Hypothesis strategies built from protobuf descriptors, and the RPCs of every hearth service.

``message_strategy(descriptor)`` generates messages of any type: every scalar type at its
edges (ints at the limits of their width, floats with NaN and infinities, strings with
control characters, escape sequences, right-to-left marks, and now and then a huge one),
enums with numbers the proto does not know, repeated fields, maps, oneofs (one member or
none), nested messages, and the well-known types with odd values (Durations and Timestamps
out of range or with nanos of the wrong sign, FieldMasks naming fields that exist and ones
that do not). ``names`` adds resource names that exist, so that generated requests reach
past the "not found" check.

``discover_rpcs()`` walks the generated modules under gen/hearth/<svc>/v1/ (no list to keep
up to date): a new RPC is fuzzed without a new test.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from google.api import annotations_pb2, http_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
)
from google.protobuf.message import Message
from hypothesis import strategies as st

import hearth

F = FieldDescriptor

INT_RANGES: dict[int, tuple[int, int]] = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}

# Characters that break naive code: NUL, ESC (terminal escapes), CR/LF (log injection),
# DEL, C1 controls, bidi overrides, a BOM, zero-width joiners, astral plane.
NASTY = "\x00\x01\x07\x08\t\n\r\x1b\x7f\x85\x9b\u200b\u200d\u202e\u2066\ufeff\U0001f600/:*?%.\\"
NASTY_STRINGS = [
    "",
    " ",
    "-",
    "*",
    "..",
    "../../etc/passwd",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;title\x07",
    "line\nInjected: yes",
    "javascript:alert(1)",
    "<script>alert(1)</script>",
    "%00",
    "%2F..%2F",
    "a" * 64,
    "a" * 65,
    "hosts/",
    "hosts/-",
    "streams/x/health",
    "tcp:127.0.0.1:1",
    "unix:/nonexistent/native",
    "255.255.255.255",
    "ff:ff:ff:ff:ff:ff",
    "00:00:00:00:00:00",
    "0.0.0.0/0",
    "::",
    "239.255.0.1",
    "1e309",
    "NaN",
]
HUGE_SIZES = [1_000, 70_000]
DURATION_LIMIT = 315_576_000_000  # the Duration type's own bound (10 000 years)
TIMESTAMP_MIN, TIMESTAMP_MAX = -62_135_596_800, 253_402_300_799  # 0001-01-01 .. 9999-12-31


def text_strategy(names: Sequence[str] = ()) -> st.SearchStrategy[str]:
    alphabet = st.characters(codec="utf-8") | st.sampled_from(NASTY)
    parts: list[st.SearchStrategy[str]] = [
        st.text(alphabet, max_size=40),
        st.sampled_from(NASTY_STRINGS),
        # Ids and names as the API wants them, so that some requests are valid.
        st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
        st.builds(
            lambda c, n: c * n,
            st.sampled_from(["a", "\x1b", "é", "/"]),
            st.sampled_from(HUGE_SIZES),
        ),
    ]
    if names:
        known = st.sampled_from(sorted(set(names)))
        parts.append(known)
        # A known name with something appended or prefixed: the same collection, no such item.
        parts.append(
            st.builds(lambda n, s: n + s, known, st.sampled_from(["x", "/", "/wakes", "\x00", " "]))
        )
        parts.append(
            st.builds(lambda n, s: n.split("/")[0] + "/" + s, known, st.text(alphabet, max_size=20))
        )
        # Weighted twice: most requests that matter name something that exists.
        parts.append(known)
    return st.one_of(parts)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e400, -1e400, 1e20, -1]),  # json.dumps writes Infinity for 1e400
    st.text(max_size=10),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


def token_strategy() -> st.SearchStrategy[str]:
    """Page tokens that look like the ones a service hands out (URL-safe base64 of JSON,
    padding stripped) but carry values it never wrote: forged offsets of any JSON type."""
    offsets: st.SearchStrategy[Any] = st.sampled_from(
        [1e400, -1e400, 1e20, -1, 0, 2**63, "12", None, [1], {}, True]
    )
    doc = st.one_of(
        st.fixed_dictionaries({"o": offsets, "c": st.just("")}),
        st.fixed_dictionaries({"o": JSON_VALUES, "c": JSON_VALUES}),
        st.fixed_dictionaries({"o": JSON_VALUES}),
        JSON_VALUES,
    )
    return st.builds(
        lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("="), doc
    )


def int_strategy(field_type: int) -> st.SearchStrategy[int]:
    lo, hi = INT_RANGES[field_type]
    edges = [lo, lo + 1, -1, 0, 1, 2, 100, 2**15, 2**31 - 1, 2**31, 2**32, 2**53 + 1, hi - 1, hi]
    return st.one_of(
        st.sampled_from(sorted({e for e in edges if lo <= e <= hi})),
        st.integers(max(lo, -5), min(hi, 100)),
        st.integers(lo, hi),
    )


def float_strategy(width: Literal[32, 64]) -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from(
            [0.0, -0.0, math.nan, math.inf, -math.inf, 1e-320, 1e308, -1.0, 0.5, 100.0]
        ),
        st.floats(width=width, allow_nan=True, allow_infinity=True),
    )


def _msg(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None, field.full_name
    return field.message_type


def _enum(field: FieldDescriptor) -> EnumDescriptor:
    assert field.enum_type is not None, field.full_name
    return field.enum_type


def message_class(desc: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(desc)


def _well_known(desc: Descriptor, names: Sequence[str]) -> st.SearchStrategy[Message] | None:
    cls = message_class(desc)
    full = desc.full_name
    if full == "google.protobuf.Duration":
        seconds = st.one_of(
            st.sampled_from(
                [
                    0,
                    1,
                    -1,
                    2,
                    30,
                    3600,
                    DURATION_LIMIT,
                    DURATION_LIMIT + 1,
                    -DURATION_LIMIT - 1,
                    2**63 - 1,
                    -(2**63),
                ]
            ),
            st.integers(-(2**63), 2**63 - 1),
        )
        nanos = st.one_of(
            st.sampled_from([0, 1, -1, 500_000_000, 999_999_999, 1_000_000_000, -(2**31)]),
            st.integers(-(2**31), 2**31 - 1),
        )
        return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)
    if full == "google.protobuf.Timestamp":
        seconds = st.one_of(
            st.sampled_from(
                [
                    0,
                    -1,
                    1_700_000_000,
                    TIMESTAMP_MIN,
                    TIMESTAMP_MAX,
                    TIMESTAMP_MAX + 1,
                    TIMESTAMP_MIN - 1,
                ]
            ),
            st.integers(-(2**63), 2**63 - 1),
        )
        nanos = st.one_of(
            st.sampled_from([0, -1, 999_999_999, 1_000_000_000]), st.integers(-(2**31), 2**31 - 1)
        )
        return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)
    if full == "google.protobuf.FieldMask":
        return mask_strategy(cls, sorted(_ALL_FIELD_NAMES))
    if full == "google.protobuf.Empty":
        return st.just(cls())
    return None


_NO_VALID: Mapping[str, Sequence[Message]] = {}


def mask_strategy(cls: type[Message], real: Sequence[str]) -> st.SearchStrategy[Message]:
    """FieldMasks whose paths mix real field names with junk."""
    path = st.one_of(
        st.sampled_from(list(real) or ["name"]),
        text_strategy(),
        st.sampled_from(["*", "", "a.b", "name.x"]),
    )
    return st.builds(lambda ps: cls(paths=ps), st.lists(path, max_size=5))


def _mask_paths(desc: Descriptor) -> list[str]:
    """The paths an update mask in ``desc`` can really name: the fields of the resource
    beside it (and of ``desc`` itself), not every field name hearth has."""
    names = set(desc.fields_by_name)
    for f in desc.fields:
        if f.type == F.TYPE_MESSAGE and not _is_map(f):
            names.update(_msg(f).fields_by_name)
    return sorted(names)


# Names of every field of every hearth message: FieldMask paths draw from these.
_ALL_FIELD_NAMES: set[str] = set()


def _field_value(
    field: FieldDescriptor,
    names: Sequence[str],
    depth: int,
    valid: Mapping[str, Sequence[Message]] = _NO_VALID,
) -> st.SearchStrategy[Any]:
    t = field.type
    if t == F.TYPE_STRING:
        if field.name.endswith("_token"):
            return st.one_of(text_strategy(names), token_strategy())
        return text_strategy(names)
    if t == F.TYPE_BYTES:
        return st.one_of(
            st.binary(max_size=64), st.builds(lambda n: b"\x00" * n, st.sampled_from(HUGE_SIZES))
        )
    if t in INT_RANGES:
        return int_strategy(t)
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t == F.TYPE_DOUBLE:
        return float_strategy(64)
    if t == F.TYPE_FLOAT:
        return float_strategy(32)
    if t == F.TYPE_ENUM:
        known = [v.number for v in _enum(field).values]
        return st.one_of(
            st.sampled_from(known), st.sampled_from([-1, max(known) + 1, 2**31 - 1, -(2**31)])
        )
    if t in (F.TYPE_MESSAGE, F.TYPE_GROUP):
        return message_strategy(_msg(field), names, depth + 1, valid)
    raise NotImplementedError(f"field type {t} of {field.full_name}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == F.TYPE_MESSAGE and _msg(field).GetOptions().map_entry


def _set_field(msg: Message, field: FieldDescriptor, value: Any) -> None:
    if _is_map(field):
        container = getattr(msg, field.name)
        value_field = _msg(field).fields_by_name["value"]
        for k, v in value.items():
            if value_field.type == F.TYPE_MESSAGE:
                container[k].CopyFrom(v)
            else:
                container[k] = v
    elif field.is_repeated:
        getattr(msg, field.name).extend(value)
    elif field.type == F.TYPE_MESSAGE:
        getattr(msg, field.name).CopyFrom(value)
    else:
        setattr(msg, field.name, value)


MAX_DEPTH = 4
MASK = "google.protobuf.FieldMask"


def message_strategy(
    desc: Descriptor,
    names: Sequence[str] = (),
    depth: int = 0,
    valid: Mapping[str, Sequence[Message]] = _NO_VALID,
) -> st.SearchStrategy[Any]:
    """Messages of type ``desc`` (a Descriptor), fields set or not, values at the edges.

    ``valid`` maps message type names to instances known to be accepted (e.g. the stored
    items a List call returned): for those types, a third of the draws is such an instance
    with one or two fields replaced by generated values, so that generated requests also
    reach the code behind the first validation error.
    """
    wkt = _well_known(desc, names)
    if wkt is not None:
        return wkt
    cls = message_class(desc)
    if depth > MAX_DEPTH:
        return st.just(cls())
    _ALL_FIELD_NAMES.update(desc.fields_by_name)

    singles: dict[str, st.SearchStrategy[Any]] = {}
    oneofs: list[st.SearchStrategy[tuple[FieldDescriptor, Any] | None]] = []
    in_oneof: set[str] = set()
    for oneof in desc.oneofs:
        members = list(oneof.fields)
        in_oneof.update(f.name for f in members)
        choices = [st.tuples(st.just(f), _field_value(f, names, depth, valid)) for f in members]
        oneofs.append(st.one_of(st.none(), *choices))
    for field in desc.fields:
        if field.name in in_oneof:
            continue
        if _is_map(field):
            entry = _msg(field)
            key = _field_value(entry.fields_by_name["key"], names, depth, valid)
            value = _field_value(entry.fields_by_name["value"], names, depth, valid)
            singles[field.name] = st.dictionaries(key, value, max_size=4)
        elif field.is_repeated:
            size = 3 if depth else 5
            singles[field.name] = st.one_of(
                st.lists(_field_value(field, names, depth, valid), max_size=size),
                # Now and then a long list of one value (bounds on repeated fields).
                st.builds(
                    lambda v, n: [v] * n,
                    _field_value(field, names, depth, valid),
                    st.sampled_from([50, 1000]),
                )
                if depth == 0
                else st.just([]),
            )
        elif field.type == F.TYPE_MESSAGE and _msg(field).full_name == MASK:
            singles[field.name] = mask_strategy(message_class(_msg(field)), _mask_paths(desc))
        else:
            singles[field.name] = _field_value(field, names, depth, valid)

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        values = draw(st.fixed_dictionaries({}, optional=singles))
        for name, value in values.items():
            _set_field(msg, desc.fields_by_name[name], value)
        for choice in oneofs:
            picked = draw(choice)
            if picked is not None:
                _set_field(msg, picked[0], picked[1])
        return msg

    known = list(valid.get(desc.full_name, ()))
    if not known:
        return build()
    fields = list(desc.fields)

    @st.composite
    def mutate(draw: st.DrawFn) -> Message:
        msg = cls()
        msg.CopyFrom(draw(st.sampled_from(known)))
        for field in draw(
            st.lists(st.sampled_from(fields), max_size=2, unique_by=lambda f: f.name)
        ):
            msg.ClearField(field.name)
            if field.name in singles:
                _set_field(msg, field, draw(singles[field.name]))
        return msg

    return st.one_of(build(), mutate(), st.sampled_from(known))


# ------------------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class Rpc:
    service: str  # "wake", "audio", "ci", "gateway": the hearth service (gen/hearth/<svc>/)
    method: MethodDescriptor

    @property
    def full_name(self) -> str:
        """``hearth.wake.v1.WakeService/CreateHost``: the gRPC path without the slash."""
        return f"{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def path(self) -> str:
        return "/" + self.full_name

    @property
    def streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def request_class(self) -> type[Message]:
        return message_class(self.method.input_type)

    @property
    def response_class(self) -> type[Message]:
        return message_class(self.method.output_type)

    def http_rule(self) -> http_pb2.HttpRule | None:
        options = self.method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            return None
        return options.Extensions[annotations_pb2.http]

    def __str__(self) -> str:
        return self.full_name


def discover_rpcs() -> list[Rpc]:
    """Every method of every service declared in the generated modules under hearth/."""
    rpcs: list[Rpc] = []
    for info in pkgutil.walk_packages(hearth.__path__, "hearth."):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(info.name)
        service = info.name.split(".")[1]
        for svc in module.DESCRIPTOR.services_by_name.values():
            rpcs.extend(Rpc(service, m) for m in svc.methods)
    return sorted(rpcs, key=lambda r: r.full_name)


# ------------------------------------------------------------------ HTTP (google.api.http)


def to_json(msg: Message) -> dict[str, Any]:
    """The JSON mapping of ``msg``, written by hand so that values json_format refuses (a
    Duration of 2**63 s, an out-of-range Timestamp, an unknown enum number) still go out as
    the closest JSON a client could send."""
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        if _is_map(field):
            vf = _msg(field).fields_by_name["value"]
            out[field.json_name] = {str(k): _json_value(vf, v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.json_name] = [_json_value(field, v) for v in value]
        else:
            out[field.json_name] = _json_value(field, value)
    return out


def _json_value(field: FieldDescriptor, value: Any) -> Any:
    t = field.type
    if t == F.TYPE_MESSAGE:
        full = _msg(field).full_name
        if full == "google.protobuf.Duration":
            frac = f".{abs(value.nanos):09d}" if value.nanos else ""
            return f"{value.seconds}{frac}s"
        if full == "google.protobuf.Timestamp":
            try:
                return str(value.ToJsonString())
            except (ValueError, OverflowError):
                return f"{value.seconds}-01-01T00:00:00Z"
        if full == "google.protobuf.FieldMask":
            return ",".join(value.paths)
        return to_json(value)
    if t == F.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if t == F.TYPE_ENUM:
        known = _enum(field).values_by_number.get(value)
        return known.name if known else value
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if t in (F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64):
        return str(value)
    return value


def _get_path(msg: Message, path: str) -> Any:
    value: Any = msg
    for part in path.split("."):
        value = getattr(value, part)
    return value


def http_request(
    rpc: Rpc, msg: Message
) -> tuple[str, str, dict[str, Any] | None, list[tuple[str, str]]]:
    """(method, path, JSON body or None, query pairs) for ``msg`` by the RPC's HttpRule."""
    from urllib.parse import quote

    rule = rpc.http_rule()
    assert rule is not None, rpc
    verb = rule.WhichOneof("pattern")
    assert verb is not None
    template: str = getattr(rule, verb)
    data = to_json(msg)
    used: set[str] = set()
    path = ""
    i = 0
    while i < len(template):
        if template[i] == "{":
            end = template.index("}", i)
            var = template[i + 1 : end].split("=")[0]
            used.add(var)
            value = str(_get_path(msg, var))
            if "." in var:  # e.g. host.name: drop it from the body's sub-object
                top, sub = var.split(".", 1)
                if isinstance(data.get(top), dict):
                    data[top].pop(sub, None)
            path += quote(value, safe="/")
            i = end + 1
        else:
            path += template[i]
            i += 1
    fields = msg.DESCRIPTOR.fields_by_name
    json_names = {f.name: f.json_name for f in fields.values()}
    for var in used:
        if "." not in var:
            data.pop(json_names.get(var, var), None)
    body: dict[str, Any] | None = None
    query: list[tuple[str, str]] = []
    if rule.body == "*":
        body = data
    elif rule.body:
        body = data.get(json_names[rule.body], {})
        data.pop(json_names[rule.body], None)
    if rule.body != "*":
        for key, value in data.items():
            if isinstance(value, dict):
                continue  # nested messages in a query string: not part of these contracts
            for item in value if isinstance(value, list) else [value]:
                query.append((key, item if isinstance(item, str) else _json_scalar(item)))
    return verb.upper(), path, body, query


def _json_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
