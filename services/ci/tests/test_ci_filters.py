"""Filters against the replay server: same changes on v2 and v10, one Gerrit request per
refresh, reasons, outdated patchsets, and bad input naming the field."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hearth.ci.v1 import ci_pb2
from hearth_ci import filters
from hearth_ci.dashboard import build_dashboard, gerrit_matches
from hearth_ci.sources import GerritClient, ZuulClient, zuul_status_url
from hearth_ci_lab.replay import ReplayServer, control
from hearth_client.dash import parse_operator

FILTERS = [
    ci_pb2.Filter(user="danms"),
    ci_pb2.Filter(user="danms", projects=["openstack/nova"], starred=True, owners=["danms"]),
    ci_pb2.Filter(
        owners=["alice", "bob"], operator=ci_pb2.OPERATOR_AND, projects=["openstack/heat"]
    ),
    ci_pb2.Filter(topic="bp/cells-v2", ignored_pipelines=["check"]),
    ci_pb2.Filter(user="danms", watched=True),
    ci_pb2.Filter(changes=["48418", "48423", "48560"]),
    ci_pb2.Filter(query="project:openstack/tempest OR owner:carol"),
]


def _groups(item: ci_pb2.Item) -> tuple[str, ...]:
    """FILTER_GROUP_OWNER, ... as "owner", ... (the filter's group names)."""
    return tuple(
        ci_pb2.FilterGroup.Name(g).removeprefix("FILTER_GROUP_").lower() for g in item.matched_by
    )


def _shape(dash: ci_pb2.Dashboard) -> list[tuple[Any, ...]]:
    return [
        (p.name, q.total, i.change, i.position, i.status, i.behind_change, i.job_string,
         tuple(i.matched_by), i.subject, i.owner, i.starred, i.warning)
        for p in dash.pipelines
        for q in p.queues
        for i in q.items
    ]  # fmt: skip


async def _dashboard(
    session: aiohttp.ClientSession, zuul_url: str, gerrit: GerritClient, flt: ci_pb2.Filter
) -> ci_pb2.Dashboard:
    zuul = ZuulClient(session, zuul_url)
    assert await zuul.fetch(), zuul.health.error
    return build_dashboard(zuul.status, await gerrit_matches(gerrit, flt), flt)


async def test_same_filters_same_changes_on_v2_and_v10(replay: ReplayServer) -> None:
    await control(replay.url, shape="v10")
    async with aiohttp.ClientSession() as session:
        gerrit = GerritClient(session, replay.url, "danms", "secret")
        for flt in FILTERS:
            v2 = await _dashboard(session, zuul_status_url(replay.url, ""), gerrit, flt)
            v10 = await _dashboard(session, zuul_status_url(replay.url, "openstack"), gerrit, flt)
            assert v2.zuul.api_generation == ci_pb2.ZUUL_API_GENERATION_V2
            assert v10.zuul.api_generation == ci_pb2.ZUUL_API_GENERATION_V10
            assert _shape(v2), f"filter matched nothing: {filters.describe(flt)}"
            assert _shape(v2) == _shape(v10), filters.describe(flt)
            assert v2.matching_items == v10.matching_items > 0


async def test_or_and_and_reasons(stub: Any) -> None:
    flt = ci_pb2.Filter(user="danms", owners=["danms"], projects=["openstack/nova"])
    dash = await stub.GetDashboard(ci_pb2.GetDashboardRequest(filter=flt))
    items = [i for p in dash.pipelines for q in p.queues for i in q.items]
    assert dash.filter_description == "status:open owner:danms OR project:openstack/nova".replace(
        "status:open ", ""
    )
    assert {_groups(i) for i in items} == {("owner",), ("project",), ("owner", "project")}
    for item in items:
        assert ("owner" in _groups(item)) == (item.owner_username == "danms")
        assert ("project" in _groups(item)) == (item.project == "openstack/nova")
        assert item.own == (item.owner_username == "danms")
        assert item.subject and item.owner
    both = ci_pb2.Filter(
        owners=["danms"], projects=["openstack/nova"], operator=ci_pb2.OPERATOR_AND
    )
    dash_and = await stub.GetDashboard(ci_pb2.GetDashboardRequest(filter=both))
    and_items = [i for p in dash_and.pipelines for q in p.queues for i in q.items]
    assert and_items and {_groups(i) for i in and_items} == {("owner", "project")}
    assert dash_and.filter_description == "owner:danms AND project:openstack/nova"


async def test_starred_and_outdated_patchset_warning(stub: Any) -> None:
    flt = ci_pb2.Filter(user="danms", starred=True)
    dash = await stub.GetDashboard(ci_pb2.GetDashboardRequest(filter=flt))
    items = [i for p in dash.pipelines for q in p.queues for i in q.items]
    assert items and all(i.starred and i.number % 5 == 0 for i in items)
    assert all(ci_pb2.FILTER_GROUP_STARRED in i.matched_by for i in items)
    # The replay's Gerrit has a newer patchset for 48727 and 48111 than Zuul tests.
    flt = ci_pb2.Filter(changes=["48727", "48111", "48418"])
    dash = await stub.GetDashboard(ci_pb2.GetDashboardRequest(filter=flt))
    warnings = {i.change: i.warning for p in dash.pipelines for q in p.queues for i in q.items}
    assert warnings == {
        "48727,1": "Zuul tests patchset 1, Gerrit's current is 2",
        "48111,7": "Zuul tests patchset 7, Gerrit's current is 8",
        "48418,1": "",
    }


async def test_gerrit_requests_per_refresh_stay_constant(replay: ReplayServer) -> None:
    async with aiohttp.ClientSession() as session:
        gerrit = GerritClient(session, replay.url, "danms", "secret")
        for factor in (1, 5):
            await control(replay.url, scale=factor)
            flt = ci_pb2.Filter(user="danms", owners=["danms", "alice"], starred=True)
            before = gerrit.requests
            dash = await _dashboard(session, zuul_status_url(replay.url, "t"), gerrit, flt)
            assert gerrit.requests - before == 1
            assert dash.matching_items >= 10 * factor


def _field(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return str(bad.field_violations[0].field)
    raise AssertionError("no BadRequest detail")


@pytest.mark.parametrize(
    ("flt", "field", "text"),
    [
        (ci_pb2.Filter(user="danms", operator=7), "filter.operator", "unknown operator 7"),  # type: ignore[arg-type]
        (ci_pb2.Filter(), "filter.user", "the filter is empty"),
        (ci_pb2.Filter(changes=["48418", "48x18"]), "filter.changes[1]", "'48x18' is not"),
        (ci_pb2.Filter(starred=True), "filter.user", "watched and starred need"),
        (ci_pb2.Filter(owners=["a b"]), "filter.owners[0]", "one word"),
    ],
)
async def test_bad_filters_are_invalid_argument_naming_the_field(
    stub: Any, flt: ci_pb2.Filter, field: str, text: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetDashboard(ci_pb2.GetDashboardRequest(filter=flt))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _field(err.value) == field
    assert str(err.value.details()).startswith(field) and text in str(err.value.details())
    watch = ci_pb2.Watch(filter=flt)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="w", watch=watch))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _field(err.value) == f"watch.{field}"
    reply = await stub.ListWatches(ci_pb2.ListWatchesRequest())
    assert len(reply.watches) == 0  # nothing half-created


def test_operator_text_is_checked() -> None:
    assert parse_operator("and") == ci_pb2.OPERATOR_AND
    assert parse_operator("OPERATOR_OR") == ci_pb2.OPERATOR_OR
    with pytest.raises(Exception, match="operator: unknown operator 'XOR'"):
        parse_operator("XOR")
