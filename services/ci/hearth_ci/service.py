"""gRPC face of the ci service: watches (CRUD), dashboards, their streams, pipelines."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci import filters
from hearth_ci.app import CiApp
from hearth_ci.engine import WatchState
from hearth_runtime.broadcast import Lagged
from hearth_runtime.errors import HearthError, InvalidArgument
from hearth_runtime.resources import check_id, paginate, parse_name

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
    def __init__(self, app: CiApp) -> None:
        self.app = app
        self.engine = app.engine

    async def CreateWatch(self, request: ci_pb2.CreateWatchRequest, context: Ctx) -> ci_pb2.Watch:
        return self.app.create_watch(check_id("watch_id", request.watch_id), request.watch)

    async def GetWatch(self, request: ci_pb2.GetWatchRequest, context: Ctx) -> ci_pb2.Watch:
        return self.app.get_watch(parse_name("name", request.name, "watches"))

    async def ListWatches(
        self, request: ci_pb2.ListWatchesRequest, context: Ctx
    ) -> ci_pb2.ListWatchesResponse:
        _check_token(request.page_token)
        page, token = paginate(self.app.list_watches(), request.page_size, request.page_token)
        return ci_pb2.ListWatchesResponse(watches=page, next_page_token=token)

    async def UpdateWatch(self, request: ci_pb2.UpdateWatchRequest, context: Ctx) -> ci_pb2.Watch:
        watch_id = parse_name("watch.name", request.watch.name, "watches")
        return self.app.update_watch(watch_id, request.watch, request.update_mask)

    async def DeleteWatch(
        self, request: ci_pb2.DeleteWatchRequest, context: Ctx
    ) -> empty_pb2.Empty:
        self.app.delete_watch(parse_name("name", request.name, "watches"))
        return empty_pb2.Empty()

    def _watch_name(self, watch: str) -> str:
        return self.app.running_watch(parse_name("watch", watch, "watches"))

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
