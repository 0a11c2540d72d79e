"""Every method the gateway serves, found in the generated descriptors (no list by hand).

A backend ``wake`` owns every service in the proto package ``hearth.wake.v1``; its generated
modules are imported from ``gen/hearth/wake/v1``. Each method carries what the two faces
need: the message classes, whether it streams, its ``google.api.http`` rule and its
``hearth.auth.v1.policy`` (who may call it, how often; see ``hearth_gateway.policy``).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from types import ModuleType

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message

from hearth_gateway.policy import OPERATOR, Policy, method_policy

GATEWAY = "gateway"


@dataclass(frozen=True)
class HttpBinding:
    """One HTTP route of a method: ``POST /v1/{name=hosts/*}:wake`` with its body field."""

    verb: str
    template: str
    body: str
    regex: re.Pattern[str]
    # Regex group name -> request field path ("name", "host.name").
    params: dict[str, str]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(path)
        if not found:
            return None
        return {self.params[group]: value for group, value in found.groupdict().items()}


@dataclass(frozen=True)
class Method:
    backend: str
    service: str  # "hearth.wake.v1.WakeService"
    name: str  # "WakeHost"
    descriptor: descriptor.MethodDescriptor
    request_cls: type[Message]
    response_cls: type[Message]
    server_streaming: bool
    http: tuple[HttpBinding, ...]
    policy: Policy

    @property
    def mutating(self) -> bool:
        """Whether it changes state: it needs the operator role (and its calls are audited)."""
        return self.policy.role == OPERATOR

    @property
    def path(self) -> str:
        """The gRPC method path, ``/hearth.wake.v1.WakeService/WakeHost``."""
        return f"/{self.service}/{self.name}"

    @property
    def full_name(self) -> str:
        return f"{self.service}/{self.name}"


@dataclass
class Catalog:
    methods: dict[str, Method] = field(default_factory=dict)  # by gRPC path
    services: dict[str, str] = field(default_factory=dict)  # service -> backend

    def backend_services(self, backend: str) -> list[str]:
        return sorted(s for s, b in self.services.items() if b == backend)

    def http_routes(self) -> list[tuple[HttpBinding, Method]]:
        """Every route, the most literal template first (``/v1/hosts:watch`` before ``{name}``)."""
        routes = [(b, m) for m in self.methods.values() for b in m.http]
        return sorted(routes, key=lambda r: -len(_SEGMENT_VAR.sub("", r[0].template)))


_SEGMENT_VAR = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


def _pattern_regex(pattern: str) -> str:
    """``hosts/*`` -> a regex; ``*`` is one segment (no ``/`` or ``:``), ``**`` any rest."""
    parts = []
    for seg in pattern.split("/"):
        if seg == "**":
            parts.append(r"[^:]+")
        elif seg == "*":
            parts.append(r"[^/:]+")
        else:
            parts.append(re.escape(seg))
    return "/".join(parts)


def compile_template(verb: str, template: str, body: str) -> HttpBinding:
    params: dict[str, str] = {}
    out = []
    pos = 0
    for index, var in enumerate(_SEGMENT_VAR.finditer(template)):
        out.append(re.escape(template[pos : var.start()]))
        group = f"p{index}"
        params[group] = var.group(1)
        out.append(f"(?P<{group}>{_pattern_regex(var.group(2) or '*')})")
        pos = var.end()
    out.append(re.escape(template[pos:]))
    return HttpBinding(verb, template, body, re.compile("".join(out)), params)


def _bindings(rule: http_pb2.HttpRule) -> list[HttpBinding]:
    kind = rule.WhichOneof("pattern")
    found = []
    if kind == "custom":
        found.append(compile_template(rule.custom.kind.upper(), rule.custom.path, rule.body))
    elif kind:
        found.append(compile_template(kind.upper(), getattr(rule, kind), rule.body))
    for extra in rule.additional_bindings:
        found.extend(_bindings(extra))
    return found


def _method(backend: str, method: descriptor.MethodDescriptor) -> Method:
    options = method.GetOptions()
    http: list[HttpBinding] = []
    if options.HasExtension(annotations_pb2.http):
        http = _bindings(options.Extensions[annotations_pb2.http])
    return Method(
        backend=backend,
        service=method.containing_service.full_name,
        name=method.name,
        descriptor=method,
        request_cls=message_factory.GetMessageClass(method.input_type),
        response_cls=message_factory.GetMessageClass(method.output_type),
        server_streaming=method.server_streaming,
        http=tuple(http),
        policy=method_policy(method),
    )


def _pb2_modules(backend: str) -> list[ModuleType]:
    package = importlib.import_module(f"hearth.{backend}.v1")
    names = [m.name for m in pkgutil.iter_modules(package.__path__) if m.name.endswith("_pb2")]
    return [importlib.import_module(f"hearth.{backend}.v1.{name}") for name in sorted(names)]


def build_catalog(backends: list[str] | tuple[str, ...], own: str = GATEWAY) -> Catalog:
    """Every unary and server-streaming method of each backend's ``hearth.<b>.v1`` package.

    ``own`` is the gateway's package: its methods are listed too (served locally).
    """
    catalog = Catalog()
    for backend in [*backends, own]:
        for module in _pb2_modules(backend):
            file: descriptor.FileDescriptor = module.DESCRIPTOR
            for service in file.services_by_name.values():
                catalog.services[service.full_name] = backend
                for md in service.methods:
                    if md.client_streaming:
                        continue  # no contract uses client streams; HTTP cannot carry them
                    method = _method(backend, md)
                    catalog.methods[method.path] = method
    return catalog


def file_descriptors(backends: list[str] | tuple[str, ...]) -> list[descriptor.FileDescriptor]:
    """The backends' proto files (their imports come along through the default pool)."""
    return [m.DESCRIPTOR for b in backends for m in _pb2_modules(b)]
