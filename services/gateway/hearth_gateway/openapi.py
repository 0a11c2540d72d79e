"""An OpenAPI 3.0 document generated from the same descriptors the HTTP face routes by."""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from hearth_gateway.catalog import Catalog, HttpBinding, Method

_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    "google.protobuf.FieldMask": {"type": "string", "example": "volume,muted"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"type": "object", "additionalProperties": True},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "int64"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_VAR = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, desc: Any) -> dict[str, Any]:
        if desc.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[desc.full_name])
        if desc.full_name not in self.components:
            self.components[desc.full_name] = {}  # placeholder: recursion stops here
            self.components[desc.full_name] = {
                "type": "object",
                "properties": {f.json_name: self.field(f) for f in desc.fields},
            }
        return {"$ref": f"#/components/schemas/{desc.full_name}"}

    def field(self, field: Any) -> dict[str, Any]:
        msg = field.message_type
        if msg is not None and msg.GetOptions().map_entry:
            return {
                "type": "object",
                "additionalProperties": self.field(msg.fields_by_name["value"]),
            }
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            one = self.ref(msg)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            one = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        else:
            one = dict(_SCALARS[field.type])
        if field.is_repeated:
            return {"type": "array", "items": one}
        return one


def _query_params(desc: Any, skip: set[str], prefix: str = "") -> list[dict[str, Any]]:
    params = []
    for field in desc.fields:
        path = prefix + field.name
        if path in skip:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name not in (
            _WELL_KNOWN
        ):
            if prefix.count(".") < 2 and not field.message_type.GetOptions().map_entry:
                params += _query_params(field.message_type, skip, path + ".")
            continue
        schema: dict[str, Any] = {"type": "string"}
        if field.type in _SCALARS:
            schema = dict(_SCALARS[field.type])
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
        params.append({"name": path, "in": "query", "schema": schema})
    return params


def _operation(schemas: _Schemas, binding: HttpBinding, method: Method) -> dict[str, Any]:
    desc = method.request_cls.DESCRIPTOR
    path_fields = set(binding.params.values())
    params: list[dict[str, Any]] = [
        {"name": f, "in": "path", "required": True, "schema": {"type": "string"}}
        for f in path_fields
    ]
    if binding.body != "*":
        skip = path_fields | ({binding.body} if binding.body else set())
        params += _query_params(desc, skip)
    response = schemas.ref(method.response_cls.DESCRIPTOR)
    content: dict[str, Any] = {"application/json": {"schema": response}}
    if method.server_streaming:
        content = {"text/event-stream": {"schema": response}}
    op: dict[str, Any] = {
        "operationId": f"{method.service.rsplit('.', 1)[-1]}_{method.name}",
        "tags": [method.backend],
        "summary": f"{method.full_name}"
        + (" (Server-Sent Events)" if method.server_streaming else ""),
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": content},
            "default": {
                "description": "An error as google.rpc.Status",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Status"}}
                },
            },
        },
        "security": [{"bearer": []}],
    }
    if binding.body:
        body_schema = (
            schemas.ref(desc)
            if binding.body == "*"
            else schemas.field(desc.fields_by_name[binding.body])
        )
        op["requestBody"] = {"content": {"application/json": {"schema": body_schema}}}
    return op


def openapi_document(catalog: Catalog, title: str, version: str) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for binding, method in catalog.http_routes():
        path = _VAR.sub(r"{\1}", binding.template)
        paths.setdefault(path, {})[binding.verb.lower()] = _operation(schemas, binding, method)
    schemas.components["Status"] = {
        "type": "object",
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "object"}},
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
