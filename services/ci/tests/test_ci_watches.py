# ruff: noqa: F811  (fixtures come from hearth_ci.testkit; tests take them as arguments)
"""Watches: CRUD and persistence, the dashboard stream and its events, metrics, polling."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from prometheus_client import REGISTRY

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci.main import SPEC
from hearth_ci.replay import ReplayServer, control
from hearth_ci.testkit import (  # noqa: F401  # fixtures
    channel,
    ci,
    events_until,
    fixtures_dir,
    kinds_of,
    replay,
    replay_config,
    stub,
)
from hearth_runtime import start_service
from hearth_testing import wait_for_async

Kind = ci_pb2.DashboardEvent.Kind


def _watch(**flt: Any) -> ci_pb2.Watch:
    return ci_pb2.Watch(display_name="mine", filter=ci_pb2.Filter(**flt))


async def test_crud_and_persistence(replay: ReplayServer, tmp_path: Path) -> None:
    config = replay_config(replay.url, tmp_path / "state")
    runtime = await start_service(SPEC, config)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        stub = ci_pb2_grpc.CiServiceStub(channel)
        created = await stub.CreateWatch(
            ci_pb2.CreateWatchRequest(watch_id="mine", watch=_watch(user="danms"))
        )
        assert created.name == "watches/mine" and created.create_time.seconds > 0
        assert created.refresh_interval.ToMilliseconds() == 300  # the configured default
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="mine", watch=created))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="Bad_Id", watch=created))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(err.value.details()).startswith("watch_id")
        patch = _watch(owners=["danms"], projects=["openstack/nova"], operator=ci_pb2.OPERATOR_AND)
        patch.name = "watches/mine"
        updated = await stub.UpdateWatch(
            ci_pb2.UpdateWatchRequest(
                watch=patch, update_mask=field_mask_pb2.FieldMask(paths=["filter"])
            )
        )
        assert list(updated.filter.projects) == ["openstack/nova"]
        assert updated.create_time == created.create_time
        slow = ci_pb2.Watch(name="watches/mine")
        slow.refresh_interval.FromMilliseconds(10)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.UpdateWatch(
                ci_pb2.UpdateWatchRequest(
                    watch=slow, update_mask=field_mask_pb2.FieldMask(paths=["refresh_interval"])
                )
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(err.value.details()).startswith("watch.refresh_interval")
        await stub.CreateWatch(
            ci_pb2.CreateWatchRequest(watch_id="other", watch=_watch(user="bob"))
        )
        page = await stub.ListWatches(ci_pb2.ListWatchesRequest(page_size=1))
        assert [w.name for w in page.watches] == ["watches/mine"] and page.next_page_token
    await runtime.stop(grace=0)

    runtime = await start_service(SPEC, config)  # a restart keeps the watches
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        stub = ci_pb2_grpc.CiServiceStub(channel)
        got = await stub.GetWatch(ci_pb2.GetWatchRequest(name="watches/mine"))
        assert got == updated
        dash = await stub.GetDashboard(ci_pb2.GetDashboardRequest(watch="watches/mine"))
        assert dash.watch == "watches/mine" and dash.matching_items > 0
        assert dash.filter_description == "owner:danms AND project:openstack/nova"
        await stub.DeleteWatch(ci_pb2.DeleteWatchRequest(name="watches/mine"))
        for call in (
            stub.GetWatch(ci_pb2.GetWatchRequest(name="watches/mine")),
            stub.GetDashboard(ci_pb2.GetDashboardRequest(watch="watches/mine")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        names = [w.name for w in (await stub.ListWatches(ci_pb2.ListWatchesRequest())).watches]
        assert names == ["watches/other"]
    await runtime.stop(grace=0)


async def test_stream_sends_the_dashboard_first_then_events(
    stub: Any, replay: ReplayServer
) -> None:
    await stub.CreateWatch(
        ci_pb2.CreateWatchRequest(watch_id="gate", watch=_watch(changes=["48418", "48423"]))
    )
    call = stub.WatchDashboard(ci_pb2.WatchDashboardRequest(watch="watches/gate"))
    first = await asyncio.wait_for(call.read(), 10)
    assert first.kind == Kind.KIND_SNAPSHOT and first.dashboard.matching_items == 2
    await control(replay.url, document="v2-status-basic.json")

    left, _ = await events_until(call, {Kind.KIND_LEFT_PIPELINE})
    # Gerrit and Zuul answer from the same document: both leave in one refresh.
    assert kinds_of(left) == {("KIND_LEFT_PIPELINE", "48418,1"), ("KIND_LEFT_PIPELINE", "48423,2")}
    assert {e.message for e in left} == {"48418,1 left gate", "48423,2 left gate"}
    await control(replay.url, document="v2-status-tree.json")
    enqueued, snapshot = await events_until(call, {Kind.KIND_ENQUEUED})
    assert kinds_of(enqueued) == {("KIND_ENQUEUED", "48418,1"), ("KIND_ENQUEUED", "48423,2")}
    assert {e.item.pipeline for e in enqueued} == {"gate"}
    assert snapshot.dashboard.matching_items == 2
    call.cancel()


async def test_inline_stream_and_metrics(stub: Any, replay: ReplayServer) -> None:
    await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="m", watch=_watch(user="danms")))
    call = stub.WatchDashboard(
        ci_pb2.WatchDashboardRequest(filter=ci_pb2.Filter(projects=["openstack/heat"]))
    )
    first = await asyncio.wait_for(call.read(), 10)
    assert first.kind == Kind.KIND_SNAPSHOT and first.dashboard.matching_items > 0
    call.cancel()

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    async def watched() -> float:
        return sum(
            sample("hearth_ci_watched_items", watch="m", status=s) or 0
            for s in ("PASSING", "FAILING", "BEHIND_FAILURE", "QUEUED", "UNKNOWN")
        )

    await wait_for_async("watched items in the metrics", watched)
    assert sample("hearth_ci_queue_items", pipeline="gate") == 30
    assert sample("hearth_ci_zuul_event_queue_length", queue="trigger") == 85
    assert (sample("hearth_ci_poll_seconds_count", source="zuul") or 0) > 0
    assert (sample("hearth_ci_poll_seconds_count", source="gerrit") or 0) > 0
    age = sample("hearth_ci_data_age_seconds", source="zuul")
    assert age is not None and 0 <= age < 5
    errors_before = sample("hearth_ci_poll_errors_total", source="zuul") or 0
    await control(replay.url, zuul_fault="500")

    async def more_errors() -> bool:
        return (sample("hearth_ci_poll_errors_total", source="zuul") or 0) > errors_before

    await wait_for_async("a counted Zuul error", more_errors)
    await control(replay.url, zuul_fault="")


async def test_zuul_polls_are_conditional(replay: ReplayServer, ci: Any) -> None:
    async def counters() -> dict[str, int] | None:
        found: dict[str, int] = (await control(replay.url))["counters"]
        return found if found.get("zuul_not_modified", 0) >= 2 else None

    found = await wait_for_async("two 304 answers", counters)
    assert found is not None
    assert found["zuul"] > found["zuul_not_modified"]


async def test_on_demand_reads_are_fresh_without_watches(
    replay: ReplayServer, tmp_path: Path
) -> None:
    config = replay_config(replay.url, tmp_path, idle_poll_seconds=600, min_refresh_seconds=0.1)
    runtime = await start_service(SPEC, config)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            stub = ci_pb2_grpc.CiServiceStub(channel)
            before = await stub.ListPipelines(ci_pb2.ListPipelinesRequest())
            assert not before.zuul.message
            polls = (await control(replay.url, document="v2-status-basic.json"))["counters"]

            async def older_than_min_refresh() -> bool:
                age = REGISTRY.get_sample_value("hearth_ci_data_age_seconds", {"source": "zuul"})
                return age is not None and age > config.min_refresh_seconds

            await wait_for_async("Zuul data older than min_refresh", older_than_min_refresh)
            after = await stub.ListPipelines(ci_pb2.ListPipelinesRequest())
            assert after.zuul.message == "Example info message"
            # Exactly one poll more: the on-demand read's, not an idle poll (600 s apart).
            counters = (await control(replay.url))["counters"]
            assert counters["zuul"] == polls["zuul"] + 1
    finally:
        await runtime.stop(grace=0)
