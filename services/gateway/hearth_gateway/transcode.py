"""HTTP/JSON <-> protobuf, the way ``google.api.http`` describes it.

Path variables and query parameters become request fields (``host.name``, repeated by
repeating the parameter); the body becomes the field the rule names, or the whole request for
``body: "*"``. Errors follow ``google/rpc/code.proto``: the HTTP status of each gRPC code and a
JSON body ``{code, message, details}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2

from hearth_gateway.catalog import HttpBinding, Method

# google/rpc/code.proto: the HTTP mapping of each canonical code.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Message types whose JSON form is a string, so a query or path string can set them.
_STRING_TYPES = {
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "google.protobuf.FieldMask",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
}

# Query parameters the gateway itself reads, never request fields.
RESERVED_QUERY = {"access_token", "timeout"}


_PARSE_FIELD = re.compile(r"Failed to parse ([A-Za-z0-9_.]+) field")
_NO_FIELD = re.compile(r'has no field named "([^"]{1,100})"')


class BadRequest(Exception):
    """The HTTP request cannot become the method's request message (-> INVALID_ARGUMENT).

    ``field`` names what was wrong: a request field's path, or "body"."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


def _shown(text: str) -> str:
    """A caller's value quoted in an error message: repr'd (no control characters), bounded."""
    return repr(text if len(text) <= 100 else text[:99] + "…")


def _field(descriptor: Any, name: str) -> Any:
    for field in descriptor.fields:
        if name in (field.name, field.json_name):
            return field
    raise BadRequest(f"{descriptor.full_name} has no field {_shown(name)}", field=name[:100])


def _scalar(field: Any, text: str) -> Any:
    """A query/path string as the JSON value json_format expects for ``field``."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise BadRequest(f"{field.name}: {_shown(text)} is not true or false", field.name)
        return lowered in ("true", "1")
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        try:
            return float(text)
        except ValueError:
            raise BadRequest(f"{field.name}: {_shown(text)} is not a number", field.name) from None
    if kind == FieldDescriptor.TYPE_ENUM:
        return int(text) if text.lstrip("-").isdigit() else text
    if kind in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        return text
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return text  # well-known types (Duration "2s", Timestamp, FieldMask) take strings
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"{field.name}: {_shown(text)} is not an integer", field.name) from None


def _set_path(tree: dict[str, Any], descriptor: Any, path: str, values: list[str]) -> None:
    parts = path.split(".")
    node = tree
    desc = descriptor
    for part in parts[:-1]:
        field = _field(desc, part)
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.is_repeated:
            raise BadRequest(f"{path}: {part} is not a message", path)
        node = node.setdefault(field.name, {})
        if not isinstance(node, dict):
            raise BadRequest(f"{path}: {part} is given twice, as a value and by parts", path)
        desc = field.message_type
    field = _field(desc, parts[-1])
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name not in (
        _STRING_TYPES
    ):
        raise BadRequest(f"{path}: a message, not a value (set its fields)", path)
    if field.is_repeated:
        node[field.name] = [_scalar(field, v) for v in values]
    else:
        node[field.name] = _scalar(field, values[-1])


def build_request(
    method: Method,
    binding: HttpBinding,
    path_params: Mapping[str, str],
    query: Iterable[tuple[str, str]],
    body: bytes,
) -> Message:
    """The request message for one HTTP call (raises BadRequest with a readable message)."""
    desc = method.request_cls.DESCRIPTOR
    tree: dict[str, Any] = {}
    if binding.body and body.strip():
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"the body is not JSON: {str(exc)[:200]}") from None
        if binding.body == "*":
            if not isinstance(parsed, dict):
                raise BadRequest("the body must be a JSON object")
            tree = parsed
        else:
            tree[_field(desc, binding.body).name] = parsed
    if binding.body != "*":
        grouped: dict[str, list[str]] = {}
        for key, value in query:
            if key not in RESERVED_QUERY:
                grouped.setdefault(key, []).append(value)
        for key, values in grouped.items():
            _set_path(tree, desc, key, values)
    for path, value in path_params.items():
        _set_path(tree, desc, path, [value])
    message = method.request_cls()
    try:
        json_format.ParseDict(tree, message)
    except json_format.ParseError as exc:
        raise BadRequest(str(exc)[:500], _parse_error_field(str(exc))) from None
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        # json_format's own checks miss a few shapes (e.g. a list where a map goes).
        raise BadRequest(f"the request does not fit {desc.full_name}: {str(exc)[:200]}") from None
    return message


def _parse_error_field(text: str) -> str:
    """The field json_format's message names ("Failed to parse host field: ..."), or body."""
    match = _PARSE_FIELD.search(text)
    if match:
        return match.group(1)
    match = _NO_FIELD.search(text)
    return match.group(1) if match else "body"


def to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def error_body(
    code: grpc.StatusCode, message: str, details_bin: bytes | None = None
) -> dict[str, Any]:
    """``{code, message, details}`` as google.rpc.Status in JSON (details with their @type)."""
    details: list[dict[str, Any]] = []
    if details_bin:
        status = status_pb2.Status.FromString(details_bin)
        for any_detail in status.details:
            try:
                details.append(json_format.MessageToDict(any_detail))
            except (TypeError, json_format.Error):
                details.append({"@type": any_detail.type_url})
    return {"code": code.value[0], "message": message, "details": details}
