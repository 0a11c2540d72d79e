"""The descriptor-built strategy reaches every field type, and the HTTP mapping follows the
google.api.http rules (no services needed)."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,
    field_mask_pb2,
    timestamp_pb2,
)
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proto_strategies import (  # type: ignore[import-not-found]
    DURATION_LIMIT,
    discover_rpcs,
    http_request,
    message_class,
    message_strategy,
)

from hearth.wake.v1 import wake_pb2

F = descriptor_pb2.FieldDescriptorProto


def _every_type_descriptor() -> Any:
    """A message with one field of every scalar type, repeated, map, oneof, nested, enum
    and the well-known types, in a pool of its own."""
    pool = descriptor_pool.DescriptorPool()
    for wkt in (duration_pb2, timestamp_pb2, field_mask_pb2):
        pool.AddSerializedFile(wkt.DESCRIPTOR.serialized_pb)
    fd = descriptor_pb2.FileDescriptorProto(name="fuzz_every.proto", package="fuzztest")
    fd.syntax = "proto3"
    fd.dependency.extend(
        [
            "google/protobuf/duration.proto",
            "google/protobuf/timestamp.proto",
            "google/protobuf/field_mask.proto",
        ]
    )
    enum = fd.enum_type.add(name="Color")
    enum.value.add(name="COLOR_UNSPECIFIED", number=0)
    enum.value.add(name="RED", number=1)
    inner = fd.message_type.add(name="Inner")
    inner.field.add(name="s", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    msg = fd.message_type.add(name="Every")
    scalars = {
        "f_double": F.TYPE_DOUBLE,
        "f_float": F.TYPE_FLOAT,
        "f_int64": F.TYPE_INT64,
        "f_uint64": F.TYPE_UINT64,
        "f_int32": F.TYPE_INT32,
        "f_fixed64": F.TYPE_FIXED64,
        "f_fixed32": F.TYPE_FIXED32,
        "f_bool": F.TYPE_BOOL,
        "f_string": F.TYPE_STRING,
        "f_bytes": F.TYPE_BYTES,
        "f_uint32": F.TYPE_UINT32,
        "f_sfixed32": F.TYPE_SFIXED32,
        "f_sfixed64": F.TYPE_SFIXED64,
        "f_sint32": F.TYPE_SINT32,
        "f_sint64": F.TYPE_SINT64,
    }
    number = 1
    for name, kind in scalars.items():
        msg.field.add(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)
        number += 1

    def add_message(name: str, type_name: str, label: int = F.LABEL_OPTIONAL) -> None:
        nonlocal number
        msg.field.add(
            name=name, number=number, type=F.TYPE_MESSAGE, type_name=type_name, label=label
        )
        number += 1

    msg.field.add(
        name="f_enum", number=number, type=F.TYPE_ENUM, type_name=".fuzztest.Color", label=1
    )
    number += 1
    msg.field.add(name="r_string", number=number, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    number += 1
    add_message("f_inner", ".fuzztest.Inner")
    add_message("r_inner", ".fuzztest.Inner", F.LABEL_REPEATED)
    add_message("f_duration", ".google.protobuf.Duration")
    add_message("f_timestamp", ".google.protobuf.Timestamp")
    add_message("f_mask", ".google.protobuf.FieldMask")
    entry = msg.nested_type.add(name="MEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    add_message("m", ".fuzztest.Every.MEntry", F.LABEL_REPEATED)
    msg.oneof_decl.add(name="choice")
    for name, kind in (("o_string", F.TYPE_STRING), ("o_int", F.TYPE_INT32)):
        msg.field.add(name=name, number=number, type=kind, label=1, oneof_index=0)
        number += 1
    pool.Add(fd)
    return pool.FindMessageTypeByName("fuzztest.Every")


EVERY = _every_type_descriptor()
SEEN: dict[str, set[str]] = {}


def _note(kind: str, value: str) -> None:
    SEEN.setdefault(kind, set()).add(value)


@settings(
    max_examples=600,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
@given(message_strategy(EVERY))
def _explore(msg: Any) -> None:
    for field, _value in msg.ListFields():
        _note("set", field.name)
    if msg.f_double != msg.f_double:
        _note("double", "nan")
    if math.isinf(msg.f_float):
        _note("float", "inf")
    if msg.f_int64 in (-(2**63), 2**63 - 1):
        _note("int64", "edge")
    if msg.f_uint64 == 2**64 - 1:
        _note("uint64", "edge")
    if msg.f_int32 == -(2**31):
        _note("int32", "edge")
    if any(ord(c) < 0x20 for c in msg.f_string):
        _note("string", "control")
    if len(msg.f_string) >= 1000:
        _note("string", "huge")
    if any(ord(c) > 0xFFFF for c in msg.f_string):
        _note("string", "astral")
    if msg.f_enum not in (0, 1):
        _note("enum", "unknown")
    if abs(msg.f_duration.seconds) > DURATION_LIMIT:
        _note("duration", "out of range")
    if msg.f_duration.nanos < 0 < msg.f_duration.seconds:
        _note("duration", "mixed signs")
    if msg.f_timestamp.seconds > 253_402_300_799:
        _note("timestamp", "after 9999")
    if set(msg.f_mask.paths) & set(EVERY.fields_by_name):  # a path the message really has
        _note("mask", "real path")
    if len(msg.m) > 0:
        _note("map", "entries")
    if msg.WhichOneof("choice"):
        _note("oneof", str(msg.WhichOneof("choice")))
    if len(msg.r_inner) > 1:
        _note("repeated", "messages")


def test_strategy_reaches_every_field_type_and_its_edges() -> None:
    SEEN.clear()
    _explore()
    assert SEEN["set"] == {f.name for f in EVERY.fields}
    expected = {
        "double": {"nan"},
        "float": {"inf"},
        "int64": {"edge"},
        "uint64": {"edge"},
        "int32": {"edge"},
        "string": {"control", "huge", "astral"},
        "enum": {"unknown"},
        "duration": {"out of range", "mixed signs"},
        "timestamp": {"after 9999"},
        "mask": {"real path"},
        "map": {"entries"},
        "oneof": {"o_string", "o_int"},
        "repeated": {"messages"},
    }
    for kind, values in expected.items():
        assert SEEN.get(kind, set()) >= values, kind


def test_generated_messages_serialize_and_parse_back() -> None:
    @settings(
        max_examples=100,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.sampled_from(discover_rpcs()).flatmap(
            lambda rpc: message_strategy(rpc.method.input_type)
        )
    )
    def roundtrip(msg: Message) -> None:
        again = message_class(msg.DESCRIPTOR).FromString(msg.SerializeToString())
        assert again.SerializeToString() == msg.SerializeToString()

    roundtrip()


def test_http_request_follows_the_annotations() -> None:
    rpcs = {rpc.full_name: rpc for rpc in discover_rpcs()}
    update = rpcs["hearth.wake.v1.WakeService/UpdateHost"]
    request = wake_pb2.UpdateHostRequest(
        host=wake_pb2.Host(name="hosts/a b", mac="m"),
    )
    request.update_mask.paths.append("mac")
    verb, path, body, query = http_request(update, request)
    assert (verb, path) == ("PATCH", "/v1/hosts/a%20b")
    assert body == {"mac": "m"}  # host.name went into the path
    assert query == [("updateMask", "mac")]

    wake = rpcs["hearth.wake.v1.WakeService/WaitUntilAwake"]
    request2 = wake_pb2.WaitUntilAwakeRequest(name="hosts/x", wake=False)
    request2.timeout.seconds = 3
    assert http_request(wake, request2) == (
        "POST",
        "/v1/hosts/x:waitUntilAwake",
        {"timeout": "3s", "wake": False},
        [],
    )
