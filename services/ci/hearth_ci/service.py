"""gRPC face of the ci service: watches (CRUD), dashboards, their streams, pipelines."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci import filters
from hearth_ci.config import CiConfig
from hearth_ci.engine import Engine, WatchState
from hearth_ci.watches import UPDATABLE, WatchStore, validate_watch
from hearth_runtime.broadcast import Lagged
from hearth_runtime.errors import FailedPrecondition, HearthError, InvalidArgument
from hearth_runtime.resources import apply_update_mask, check_id, paginate, parse_name

Ctx = grpc.aio.ServicerContext
PRINCIPAL_HEADER = "x-hearth-principal"


def principal_of(context: Ctx) -> str:
    """Who asks (the gateway sets ``x-hearth-principal``); "anonymous" without it. Bounded:
    it is a key of the per-caller cap and may appear in a message."""
    for key, value in context.invocation_metadata() or ():
        if key == PRINCIPAL_HEADER and isinstance(value, str) and value:
            return value[:200]
    return "anonymous"


class Aborted(HearthError):
    """A stream fell too far behind; the client watches again (and gets the state first)."""

    code = grpc.StatusCode.ABORTED
    default_reason = "ABORTED"


PAGE_TOKEN_LIMIT = 1000


def _check_token(token: str) -> None:
    if len(token) > PAGE_TOKEN_LIMIT:
        raise InvalidArgument("page_token", f"longer than {PAGE_TOKEN_LIMIT} characters")


class CiServicer(ci_pb2_grpc.CiServiceServicer):
    def __init__(self, config: CiConfig, store: WatchStore, engine: Engine) -> None:
        self.config = config
        self.store = store
        self.engine = engine

    def _validate(self, watch: ci_pb2.Watch, field: str = "watch") -> ci_pb2.Watch:
        return validate_watch(
            watch, self.config.min_refresh_seconds, self.config.default_refresh_seconds, field
        )

    async def CreateWatch(self, request: ci_pb2.CreateWatchRequest, context: Ctx) -> ci_pb2.Watch:
        watch_id = check_id("watch_id", request.watch_id)
        watch = self.store.create(watch_id, self._validate(request.watch))
        self.engine.add_watch(watch)
        return watch

    async def GetWatch(self, request: ci_pb2.GetWatchRequest, context: Ctx) -> ci_pb2.Watch:
        return self.store.get(parse_name("name", request.name, "watches"))

    async def ListWatches(
        self, request: ci_pb2.ListWatchesRequest, context: Ctx
    ) -> ci_pb2.ListWatchesResponse:
        _check_token(request.page_token)
        page, token = paginate(self.store.list(), request.page_size, request.page_token)
        return ci_pb2.ListWatchesResponse(watches=page, next_page_token=token)

    async def UpdateWatch(self, request: ci_pb2.UpdateWatchRequest, context: Ctx) -> ci_pb2.Watch:
        watch_id = parse_name("watch.name", request.watch.name, "watches")
        current = self.store.get(watch_id)
        patched = apply_update_mask(current, request.watch, request.update_mask, UPDATABLE, "watch")
        patched = self._validate(patched)  # a quarantined watch leaves quarantine here
        patched.name = f"watches/{watch_id}"
        self.store.replace(watch_id, patched)
        self.engine.add_watch(patched)
        return patched

    async def DeleteWatch(
        self, request: ci_pb2.DeleteWatchRequest, context: Ctx
    ) -> empty_pb2.Empty:
        watch_id = parse_name("name", request.name, "watches")
        self.store.delete(watch_id)
        self.engine.remove_watch(f"watches/{watch_id}")
        return empty_pb2.Empty()

    def _watch_name(self, watch: str) -> str:
        name = f"watches/{parse_name('watch', watch, 'watches')}"
        stored = self.store.get(name.removeprefix("watches/"))  # NOT_FOUND if it does not exist
        if stored.quarantine_reason:
            raise FailedPrecondition(
                f"watch {name!r} is quarantined ({stored.quarantine_reason}); fix it with "
                "UpdateWatch or remove it with DeleteWatch"
            )
        if name not in self.engine.watches:
            self.engine.add_watch(stored)
        return name

    async def GetDashboard(
        self, request: ci_pb2.GetDashboardRequest, context: Ctx
    ) -> ci_pb2.Dashboard:
        if request.watch:
            return await self.engine.dashboard_for_watch(self._watch_name(request.watch))
        filters.validate(request.filter, "filter")
        return await self.engine.dashboard_for_filter(request.filter, principal_of(context))

    async def WatchDashboard(
        self, request: ci_pb2.WatchDashboardRequest, context: Ctx
    ) -> AsyncIterator[ci_pb2.DashboardEvent]:
        inline: WatchState | None = None
        if request.watch:
            state = self.engine.watches[self._watch_name(request.watch)]
        else:
            filters.validate(request.filter, "filter")
            inline = state = self.engine.subscribe_inline(request.filter, principal_of(context))
        try:
            async with state.broadcaster.subscribe() as sub:
                # Subscribed first, so nothing published from here on is missed.
                if request.watch:
                    dash = await self.engine.dashboard_for_watch(state.watch.name)
                else:
                    await state.ready.wait()
                    dash = state.dashboard or self.engine.build(request.filter, None)
                first = ci_pb2.DashboardEvent(
                    kind=ci_pb2.DashboardEvent.KIND_SNAPSHOT, dashboard=dash
                )
                first.time.CopyFrom(dash.time)
                yield first
                try:
                    async for event in sub:
                        yield event
                except Lagged as exc:
                    raise Aborted(str(exc)) from None
        finally:
            if inline is not None:
                self.engine.unsubscribe_inline(inline)

    async def ListPipelines(
        self, request: ci_pb2.ListPipelinesRequest, context: Ctx
    ) -> ci_pb2.ListPipelinesResponse:
        _check_token(request.page_token)
        await self.engine.fresh_zuul()
        everything = self.engine.pipelines()
        page, token = paginate(list(everything.pipelines), request.page_size, request.page_token)
        return ci_pb2.ListPipelinesResponse(
            pipelines=page, zuul=everything.zuul, next_page_token=token
        )
