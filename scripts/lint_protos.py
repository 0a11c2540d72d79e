#!/usr/bin/env python3
"""Lint the contracts in protos/: hearth's AIP rules over the compiled descriptors, then
`buf lint` (buf's STANDARD and COMMENTS rules, config in protos/buf.yaml) when buf is here.

The AIP rules (each names itself in its findings; `make lint` runs them all):

  naming              messages, enums, services PascalCase; fields lower_snake_case; enum
                      values UPPER_SNAKE_CASE; package hearth.<name>[.<part>].v<N> in its folder
  enum-value-prefix   every enum value starts with the enum's name in UPPER_SNAKE_CASE + "_"
  enum-zero           the zero value is <PREFIX>_UNSPECIFIED (AIP-126)
  comments            every service, rpc, message and enum has a leading comment; so has every
                      field of a request message (its bounds are stated where it is declared)
  request-response    an rpc's request is <Rpc>Request; List<X> answers List<X>Response,
                      Delete<X> google.protobuf.Empty, Get/Create/Update<X> the resource X
  pagination          List requests have int32 page_size and string page_token; List
                      responses have a repeated field and string next_page_token (AIP-158)
  resource            a resource (a message whose `name` is IDENTIFIER, or that a Get, Create
                      or Update returns) has google.api.resource: type "<svc>.hearth.home/<Msg>"
                      (one <svc> per package), a pattern, and a string `name` (AIP-123)
  resource-reference  a request's `name` and `parent` fields carry google.api.resource_reference,
                      and every reference (anywhere) names a resource that exists (AIP-122)
  field-behavior      Get/Delete `name`, List `parent`, and Create/Update's resource field are
                      REQUIRED (AIP-203)

``--no-buf`` skips buf (the AIP rules still run); without it a missing buf is an error.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from google.api import field_behavior_pb2, resource_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
BUF_CONFIG = PROTOS / "buf.yaml"

PASCAL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
PACKAGE = re.compile(r"^hearth(\.[a-z][a-z0-9]*)+\.v[0-9]+$")
RESOURCE_TYPE = re.compile(r"^([a-z][a-z0-9]*)\.hearth\.home/([A-Z][A-Za-z0-9]*)$")
STANDARD = re.compile(r"^(Get|List|Create|Update|Delete)([A-Z][A-Za-z0-9]*)$")

# FileDescriptorProto / DescriptorProto / ... field numbers, for source locations.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE, SERVICE_METHOD = 2, 2

TYPE_STRING = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
TYPE_INT32 = descriptor_pb2.FieldDescriptorProto.TYPE_INT32
TYPE_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
REQUIRED = field_behavior_pb2.REQUIRED
IDENTIFIER = field_behavior_pb2.IDENTIFIER
EMPTY = ".google.protobuf.Empty"
# Reads named Get<X> that are not AIP-131 standard methods (no resource name to get): each
# with the reason. The request-response and resource rules skip them; a new one needs a
# reason here, in review.
NOT_STANDARD = {
    "hearth.audio.v1.AudioService.GetPlayer": "one player per house, not a named resource",
    "hearth.ci.v1.CiService.GetDashboard": "a view of a watch or of an inline filter",
    "hearth.gateway.v1.GatewayService.GetSystemStatus": "the gateway's view, not a resource",
}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.rule}] {self.message}"


def upper_snake(name: str) -> str:
    """HostState -> HOST_STATE, Kind -> KIND."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def compile_protos(out: Path, protos: Path = PROTOS) -> descriptor_pb2.FileDescriptorSet:
    """protos/ compiled (with imports and comments) into a FileDescriptorSet at ``out``."""
    import google.api  # googleapis-common-protos ships google/api/*.proto
    import grpc_tools
    from grpc_tools import protoc

    common = Path(google.api.__path__[0]).parent.parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{protos}",
            f"-I{common}",
            f"-I{well_known}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *files,
        ]
    )
    if code != 0:
        sys.exit(f"protoc failed ({code}) on {protos}")
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class Linter:
    """The AIP rules over the ``hearth.*`` files of one FileDescriptorSet."""

    def __init__(self, fds: descriptor_pb2.FileDescriptorSet) -> None:
        self.all_files = list(fds.file)
        self.files = [f for f in fds.file if f.package.startswith("hearth.")]
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        for f in self.all_files:
            for msg, full, _ in _messages(f):
                self.messages[full] = msg
        self.resources: dict[str, str] = {}  # resource type -> message full name
        for f in self.files:
            for msg, full, _ in _messages(f):
                res = _resource(msg)
                if res is not None:
                    self.resources[res.type] = full
        self.findings: list[Finding] = []

    # ------------------------------------------------------------------------ helpers
    def _add(
        self, f: descriptor_pb2.FileDescriptorProto, path: tuple[int, ...], rule: str, message: str
    ) -> None:
        self.findings.append(Finding(f.name, _line(f, path), rule, message))

    def run(self) -> list[Finding]:
        for f in self.files:
            self._file(f)
        return self.findings

    # ------------------------------------------------------------------------- rules
    def _file(self, f: descriptor_pb2.FileDescriptorProto) -> None:
        m = PACKAGE.match(f.package)
        folder = str(Path(f.name).parent).replace("/", ".")
        if m is None or folder != f.package:
            self._add(
                f,
                (),
                "naming",
                f"package {f.package} must be hearth.<name>.v<N> "
                f"in the folder hearth/<name>/v<N>/ (file {f.name})",
            )
        requests = {m.input_type.lstrip(".") for s in f.service for m in s.method}
        services_of_package = set()
        for msg, full, path in _messages(f):
            self._message(f, msg, full, path, full in requests)
            res = _resource(msg)
            if res is not None:
                match = RESOURCE_TYPE.match(res.type)
                if match:
                    services_of_package.add(match.group(1))
        if len(services_of_package) > 1:
            self._add(
                f,
                (),
                "resource",
                "one resource type service per package, not "
                + ", ".join(sorted(services_of_package)),
            )
        for enum, path in _enums(f):
            self._enum(f, enum, path)
        for si, service in enumerate(f.service):
            spath = (FILE_SERVICE, si)
            if not PASCAL.match(service.name):
                self._add(f, spath, "naming", f"service {service.name} is not PascalCase")
            if not _comment(f, spath):
                self._add(f, spath, "comments", f"service {service.name} has no comment")
            for mi, method in enumerate(service.method):
                full = f"{f.package}.{service.name}.{method.name}"
                self._method(f, method, (*spath, SERVICE_METHOD, mi), full in NOT_STANDARD)

    def _message(
        self,
        f: descriptor_pb2.FileDescriptorProto,
        msg: descriptor_pb2.DescriptorProto,
        full: str,
        path: tuple[int, ...],
        is_request: bool,
    ) -> None:
        if not PASCAL.match(msg.name):
            self._add(f, path, "naming", f"message {full} is not PascalCase")
        if not _comment(f, path):
            self._add(f, path, "comments", f"message {full} has no comment")
        for i, field in enumerate(msg.field):
            fpath = (*path, MESSAGE_FIELD, i)
            if not SNAKE.match(field.name):
                self._add(f, fpath, "naming", f"field {full}.{field.name} is not lower_snake_case")
            if is_request and not _comment(f, fpath):
                self._add(
                    f,
                    fpath,
                    "comments",
                    f"request field {full}.{field.name} has no comment (state its bounds)",
                )
            ref = field.options.Extensions[resource_pb2.resource_reference]
            if field.options.HasExtension(resource_pb2.resource_reference):
                wanted = ref.type or ref.child_type
                if wanted != "*" and wanted not in self.resources:
                    self._add(
                        f,
                        fpath,
                        "resource-reference",
                        f"{full}.{field.name} refers to {wanted!r}, which no message declares",
                    )
            elif is_request and field.name in ("name", "parent") and field.type == TYPE_STRING:
                self._add(
                    f,
                    fpath,
                    "resource-reference",
                    f"request field {full}.{field.name} has no (google.api.resource_reference)",
                )
        name = next((x for x in msg.field if x.name == "name"), None)
        identifier = (
            name is not None
            and IDENTIFIER in name.options.Extensions[field_behavior_pb2.field_behavior]
        )
        res = _resource(msg)
        if identifier and res is None:
            self._add(
                f, path, "resource", f"{full} has an IDENTIFIER name but no (google.api.resource)"
            )
        if res is not None:
            self._resource_message(f, msg, full, path, res, name)

    def _resource_message(
        self,
        f: descriptor_pb2.FileDescriptorProto,
        msg: descriptor_pb2.DescriptorProto,
        full: str,
        path: tuple[int, ...],
        res: resource_pb2.ResourceDescriptor,
        name: descriptor_pb2.FieldDescriptorProto | None,
    ) -> None:
        match = RESOURCE_TYPE.match(res.type)
        if match is None or match.group(2) != msg.name:
            self._add(
                f,
                path,
                "resource",
                f'{full}: resource type {res.type!r} must be "<service>.hearth.home/{msg.name}"',
            )
        if not res.pattern:
            self._add(f, path, "resource", f"{full}: resource without a pattern")
        if name is None or name.type != TYPE_STRING:
            self._add(f, path, "resource", f"{full}: a resource needs a string `name` field")

    def _enum(
        self,
        f: descriptor_pb2.FileDescriptorProto,
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
    ) -> None:
        prefix = upper_snake(enum.name) + "_"
        if not PASCAL.match(enum.name):
            self._add(f, path, "naming", f"enum {enum.name} is not PascalCase")
        if not _comment(f, path):
            self._add(f, path, "comments", f"enum {enum.name} has no comment")
        zero = [v for v in enum.value if v.number == 0]
        if not zero or zero[0].name != prefix + "UNSPECIFIED":
            self._add(
                f,
                path,
                "enum-zero",
                f"enum {enum.name}: the zero value must be {prefix}UNSPECIFIED",
            )
        for i, value in enumerate(enum.value):
            vpath = (*path, ENUM_VALUE, i)
            if not UPPER_SNAKE.match(value.name):
                self._add(f, vpath, "naming", f"enum value {value.name} is not UPPER_SNAKE_CASE")
            if not value.name.startswith(prefix) or value.name == prefix:
                self._add(
                    f,
                    vpath,
                    "enum-value-prefix",
                    f"enum value {value.name} must start with {prefix}",
                )

    def _method(
        self,
        f: descriptor_pb2.FileDescriptorProto,
        method: descriptor_pb2.MethodDescriptorProto,
        path: tuple[int, ...],
        not_standard: bool = False,
    ) -> None:
        if not PASCAL.match(method.name):
            self._add(f, path, "naming", f"rpc {method.name} is not PascalCase")
        if not _comment(f, path):
            self._add(f, path, "comments", f"rpc {method.name} has no comment")
        request_name = method.input_type.rsplit(".", 1)[-1]
        if request_name != f"{method.name}Request":
            self._add(
                f,
                path,
                "request-response",
                f"rpc {method.name} takes {request_name}, not {method.name}Request",
            )
        request = self.messages.get(method.input_type.lstrip("."))
        response = self.messages.get(method.output_type.lstrip("."))
        standard = None if not_standard else STANDARD.match(method.name)
        if standard is None or request is None:
            return
        verb, noun = standard.groups()
        fields = {x.name: x for x in request.field}
        behaviours = {
            k: list(v.options.Extensions[field_behavior_pb2.field_behavior])
            for k, v in fields.items()
        }
        if verb == "List":
            self._list(f, method, path, request, response, fields, behaviours)
            return
        if verb == "Delete":
            if method.output_type != EMPTY:
                self._add(
                    f,
                    path,
                    "request-response",
                    f"rpc {method.name} must return google.protobuf.Empty",
                )
        elif response is None or _resource(response) is None:
            self._add(
                f,
                path,
                "resource",
                f"rpc {method.name} returns "
                f"{method.output_type.lstrip('.')}, which is not a resource",
            )
        if verb in ("Get", "Delete"):
            if "name" not in fields:
                self._add(f, path, "request-response", f"{request.name} has no `name` field")
            elif REQUIRED not in behaviours["name"]:
                self._add(f, path, "field-behavior", f"{request.name}.name must be REQUIRED")
        if verb in ("Create", "Update"):
            field_name = upper_snake(noun).lower()
            if field_name not in fields:
                self._add(
                    f, path, "request-response", f"{request.name} has no `{field_name}` field"
                )
            elif REQUIRED not in behaviours[field_name]:
                self._add(
                    f, path, "field-behavior", f"{request.name}.{field_name} must be REQUIRED"
                )

    def _list(
        self,
        f: descriptor_pb2.FileDescriptorProto,
        method: descriptor_pb2.MethodDescriptorProto,
        path: tuple[int, ...],
        request: descriptor_pb2.DescriptorProto,
        response: descriptor_pb2.DescriptorProto | None,
        fields: dict[str, descriptor_pb2.FieldDescriptorProto],
        behaviours: dict[str, list[int]],
    ) -> None:
        response_name = method.output_type.rsplit(".", 1)[-1]
        if response_name != f"{method.name}Response":
            self._add(
                f,
                path,
                "request-response",
                f"rpc {method.name} returns {response_name}, not {method.name}Response",
            )
        size, token = fields.get("page_size"), fields.get("page_token")
        if size is None or size.type != TYPE_INT32 or token is None or token.type != TYPE_STRING:
            self._add(
                f, path, "pagination", f"{request.name} needs int32 page_size and string page_token"
            )
        if "parent" in fields and REQUIRED not in behaviours["parent"]:
            self._add(f, path, "field-behavior", f"{request.name}.parent must be REQUIRED")
        if response is not None:
            nxt = next((x for x in response.field if x.name == "next_page_token"), None)
            repeated = [x for x in response.field if x.label == REPEATED and x.type == TYPE_MESSAGE]
            if nxt is None or nxt.type != TYPE_STRING or not repeated:
                self._add(
                    f,
                    path,
                    "pagination",
                    f"{response.name} needs a repeated field and string next_page_token",
                )


# ---------------------------------------------------------------------------- walking
def _messages(
    f: descriptor_pb2.FileDescriptorProto,
) -> Iterator[tuple[descriptor_pb2.DescriptorProto, str, tuple[int, ...]]]:
    """Every message of a file (nested ones too): (message, full name, source path)."""

    def walk(
        msgs: list[descriptor_pb2.DescriptorProto], scope: str, path: tuple[int, ...], tag: int
    ) -> Iterator[tuple[descriptor_pb2.DescriptorProto, str, tuple[int, ...]]]:
        for i, msg in enumerate(msgs):
            if msg.options.map_entry:
                continue
            full = f"{scope}.{msg.name}" if scope else msg.name
            here = (*path, tag, i)
            yield msg, full, here
            yield from walk(list(msg.nested_type), full, here, MESSAGE_NESTED)

    yield from walk(list(f.message_type), f.package, (), FILE_MESSAGE)


def _enums(
    f: descriptor_pb2.FileDescriptorProto,
) -> Iterator[tuple[descriptor_pb2.EnumDescriptorProto, tuple[int, ...]]]:
    for i, enum in enumerate(f.enum_type):
        yield enum, (FILE_ENUM, i)
    for msg, _, path in _messages(f):
        for i, enum in enumerate(msg.enum_type):
            yield enum, (*path, MESSAGE_ENUM, i)


def _resource(msg: descriptor_pb2.DescriptorProto) -> resource_pb2.ResourceDescriptor | None:
    if not msg.options.HasExtension(resource_pb2.resource):
        return None
    res: resource_pb2.ResourceDescriptor = msg.options.Extensions[resource_pb2.resource]
    return res


def _location(
    f: descriptor_pb2.FileDescriptorProto, path: tuple[int, ...]
) -> descriptor_pb2.SourceCodeInfo.Location | None:
    for loc in f.source_code_info.location:
        if tuple(loc.path) == path:
            return loc
    return None


def _line(f: descriptor_pb2.FileDescriptorProto, path: tuple[int, ...]) -> int:
    loc = _location(f, path) if path else None
    return loc.span[0] + 1 if loc is not None and loc.span else 1


def _comment(f: descriptor_pb2.FileDescriptorProto, path: tuple[int, ...]) -> bool:
    loc = _location(f, path)
    return loc is not None and bool(loc.leading_comments.strip())


# -------------------------------------------------------------------------------- buf
def find_buf() -> str | None:
    """buf from the buf-bin package beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "buf"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("buf")


def run_buf(buf: str, image: Path) -> int:
    """buf lint over the hearth files of the compiled image (imports are not ours)."""
    result = subprocess.run(
        [buf, "lint", f"{image}#format=binpb", "--path", "hearth", "--config", str(BUF_CONFIG)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = (result.stdout + result.stderr).strip()
    if out:
        print(out)
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-buf", action="store_true", help="run the AIP rules only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.binpb"
        fds = compile_protos(image)
        findings = Linter(fds).run()
        for finding in findings:
            print(finding)
        files = len([f for f in fds.file if f.package.startswith("hearth.")])
        print(f"AIP rules: {len(findings)} finding(s) in {files} hearth proto file(s)")
        code = 1 if findings else 0
        if args.no_buf:
            return code
        buf = find_buf()
        if buf is None:
            print("buf not found (pip install buf-bin, part of the dev extra; or --no-buf)")
            return 1
        buf_code = run_buf(buf, image)
        print("buf lint: " + ("clean" if buf_code == 0 else f"failed ({buf_code})"))
        return code or buf_code


if __name__ == "__main__":
    sys.exit(main())
