"""gRPC face of the wake service (hearth.wake.v1.WakeService)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TypeVar

import grpc
from google.protobuf import empty_pb2, field_mask_pb2

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_runtime import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
)
from hearth_runtime.errors import not_found
from hearth_runtime.resources import apply_update_mask, check_id, paginate, parse_name
from hearth_runtime.timeconv import duration_seconds
from hearth_wake.app import WakeApp
from hearth_wake.hosts import UPDATABLE, HostSpec, spec_from_proto
from hearth_wake.loading import Quarantined
from hearth_wake.views import wake_proto

WAIT_MARGIN_SECONDS = 2.0
WAIT_RANGE = (0.001, 3600.0)
MAX_PAGE_TOKEN_CHARS = 512
MAX_ID_CHARS = 63
MAX_NAME_CHARS = len("hosts/") + MAX_ID_CHARS
MAX_MASK_PATHS = 32
MAX_MASK_PATH_CHARS = 64
T = TypeVar("T")


def _bounded(field: str, value: str, limit: int) -> str:
    """Reject an over-long text before anything echoes it: an error message quoting a
    100 kB name would exceed gRPC's metadata limit, and the client would get
    RESOURCE_EXHAUSTED from its own stack instead of INVALID_ARGUMENT naming the field."""
    if len(value) > limit:
        raise InvalidArgument(field, f"is {len(value)} characters long; at most {limit}")
    return value


def _check_mask(mask: field_mask_pb2.FieldMask) -> None:
    if len(mask.paths) > MAX_MASK_PATHS:
        raise InvalidArgument("update_mask", f"has more than {MAX_MASK_PATHS} paths")
    for path in mask.paths:
        _bounded("update_mask", path, MAX_MASK_PATH_CHARS)


def _page(items: Sequence[T], size: int, token: str, context: str) -> tuple[list[T], str]:
    """``paginate`` with the wake API's documented bounds on the token."""
    if len(token) > MAX_PAGE_TOKEN_CHARS:
        raise InvalidArgument("page_token", f"is longer than {MAX_PAGE_TOKEN_CHARS} characters")
    try:
        return paginate(items, size, token, context)
    except (OverflowError, ValueError, TypeError):
        # A forged token with an offset like 1e400 (json gives inf) escapes paginate's own
        # check as OverflowError; it is the client's mistake all the same.
        raise InvalidArgument("page_token", "is not a token returned by a previous call") from None


class WakeServicer(wake_pb2_grpc.WakeServiceServicer):
    def __init__(self, app: WakeApp) -> None:
        self.app = app

    # ------------------------------------------------------------------ helpers
    def _find(self, field: str, name: str) -> HostSpec | Quarantined:
        """The host named ``name``, watched or quarantined (NOT_FOUND otherwise)."""
        for bad in self.app.quarantine.values():
            # Exact match first: a hand-edited row may have an id the API would reject,
            # and must still be reachable to be deleted.
            if bad.name == name:
                return bad
        _bounded(field, name, MAX_NAME_CHARS)
        host_id = parse_name(field, name, "hosts")
        for spec in self.app.engine.specs():
            if spec.id == host_id:
                return spec
        raise not_found("host", name)

    def _spec(self, field: str, name: str) -> HostSpec:
        """The watched host named ``name``; FAILED_PRECONDITION if it is quarantined."""
        found = self._find(field, name)
        if isinstance(found, Quarantined):
            raise FailedPrecondition(
                f"{found.name} is quarantined ({found.reason}); fix it with UpdateHost",
                field=field,
                metadata={"resource": found.name},
            )
        return found

    def _any_proto(self, item: HostSpec | Quarantined) -> wake_pb2.Host:
        return item.to_proto() if isinstance(item, Quarantined) else self._proto(item)

    def _proto(self, spec: HostSpec) -> wake_pb2.Host:
        return self.app.host_view(spec)

    # -------------------------------------------------------------------- hosts
    async def CreateHost(
        self, request: wake_pb2.CreateHostRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Host:
        check_id("host_id", _bounded("host_id", request.host_id, MAX_ID_CHARS))
        if not request.HasField("host"):
            raise InvalidArgument("host", "is required")
        spec = spec_from_proto(request.host_id, request.host)
        taken = spec.id in self.app.quarantine
        if taken or any(s.id == spec.id for s in self.app.engine.specs()):
            raise AlreadyExists(
                f"host {spec.name!r} already exists",
                field="host_id",
                metadata={"resource": spec.name},
            )
        return await self.app.create_host(spec)

    async def GetHost(
        self, request: wake_pb2.GetHostRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Host:
        return self._any_proto(self._find("name", request.name))

    async def ListHosts(
        self, request: wake_pb2.ListHostsRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.ListHostsResponse:
        items: list[HostSpec | Quarantined] = [
            *self.app.engine.specs(),
            *self.app.quarantine.values(),
        ]
        items.sort(key=lambda s: s.id)
        page, token = _page(items, request.page_size, request.page_token, "hosts")
        return wake_pb2.ListHostsResponse(
            hosts=[self._any_proto(s) for s in page], next_page_token=token
        )

    async def UpdateHost(
        self, request: wake_pb2.UpdateHostRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Host:
        _check_mask(request.update_mask)
        old = self._find("host.name", request.host.name)
        base = old.view if isinstance(old, Quarantined) else old.to_proto()
        merged = apply_update_mask(base, request.host, request.update_mask, UPDATABLE, "host")
        if "secureon_password" in request.update_mask.paths or request.host.secureon_password:
            merged.secureon_password = request.host.secureon_password
        if isinstance(old, Quarantined):
            # Repairing a quarantined host: every field must now pass; it keeps its origin,
            # creation time and (readable) password.
            spec = spec_from_proto(old.id, merged, id_field="host.name", origin=old.origin)
            keep = old.password if not merged.secureon_password else spec.password
            spec = replace(spec, create_time=old.create_time or spec.create_time, password=keep)
        else:
            spec = spec_from_proto(old.id, merged, base=old)
        if "secureon_password" in request.update_mask.paths and not merged.secureon_password:
            spec = replace(spec, password=b"")
        return await self.app.update_host(old, spec)

    async def DeleteHost(
        self, request: wake_pb2.DeleteHostRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self.app.delete_host(self._find("name", request.name))
        return empty_pb2.Empty()

    # -------------------------------------------------------------------- wakes
    async def WakeHost(
        self, request: wake_pb2.WakeHostRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Wake:
        spec = self._spec("name", request.name)
        wake = self.app.engine.wake(spec.id)
        if wake is None:
            raise not_found("host", request.name)
        return wake_proto(wake)

    async def WaitUntilAwake(
        self, request: wake_pb2.WaitUntilAwakeRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.Host:
        spec = self._spec("name", request.name)
        # By default, wait a little past the wake's own timeout: a wake that fails is then
        # reported as UNAVAILABLE (with its cause), not as this call's DEADLINE_EXCEEDED.
        timeout = spec.wake_timeout + WAIT_MARGIN_SECONDS
        if request.HasField("timeout"):
            timeout = duration_seconds("timeout", request.timeout, *WAIT_RANGE)
        send = request.wake if request.HasField("wake") else True
        return await self.app.wait_until_awake(spec, timeout, send)

    async def WatchHostEvents(
        self, request: wake_pb2.WatchHostEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wake_pb2.HostEvent]:
        only = ""
        if request.name:
            only = self._find("name", request.name).name
        async with self.app.events.subscribe() as sub:
            for current in self.app.current_events(only):
                yield current
            async for event in sub:
                if not only or event.host.name == only:
                    yield event

    async def ListWakes(
        self, request: wake_pb2.ListWakesRequest, context: grpc.aio.ServicerContext
    ) -> wake_pb2.ListWakesResponse:
        if request.parent == "hosts/-":
            wakes = self.app.wakes(None)
        else:
            wakes = self.app.wakes(self._find("parent", request.parent).id)
        page, token = _page(wakes, request.page_size, request.page_token, request.parent)
        return wake_pb2.ListWakesResponse(
            wakes=[wake_proto(w) for w in page], next_page_token=token
        )
