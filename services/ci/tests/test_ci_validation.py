# ruff: noqa: F811  (fixtures come from hearth_ci.testkit; tests take them as arguments)
"""Every field of ci's requests is checked against the bounds documented in ci.proto:
INVALID_ARGUMENT naming the field, nothing stored. A bad stored watch never stops
hearth-ci from starting: it is quarantined, visible, and fixable or deletable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci.main import SPEC
from hearth_ci.replay import ReplayServer
from hearth_ci.testkit import channel, ci, fixtures_dir, replay, replay_config, stub  # noqa: F401  # fixtures
from hearth_ci.watches import WatchStore
from hearth_runtime import start_service


def _watch(**filter_fields: Any) -> ci_pb2.Watch:
    return ci_pb2.Watch(filter=ci_pb2.Filter(user="danms", **filter_fields))


def _interval(seconds: int, nanos: int = 0) -> ci_pb2.Watch:
    watch = _watch()
    watch.refresh_interval.CopyFrom(duration_pb2.Duration(seconds=seconds, nanos=nanos))
    return watch


BAD_WATCHES: dict[str, tuple[str, ci_pb2.Watch]] = {
    "long display name": (
        "watch.display_name",
        ci_pb2.Watch(display_name="x" * 201, filter=ci_pb2.Filter(user="u")),
    ),
    "escape in display name": (
        "watch.display_name",
        ci_pb2.Watch(display_name="a\x1b[2J", filter=ci_pb2.Filter(user="u")),
    ),
    "too many owners": ("watch.filter.owners", _watch(owners=[f"o{i}" for i in range(21)])),
    "long owner": ("watch.filter.owners[0]", _watch(owners=["o" * 101])),
    "owner with a space": ("watch.filter.owners[0]", _watch(owners=["a b"])),
    "change with leading zero": ("watch.filter.changes[0]", _watch(changes=["0123"])),
    "too many changes": ("watch.filter.changes", _watch(changes=[str(i + 1) for i in range(51)])),
    "too many projects": ("watch.filter.projects", _watch(projects=[f"p{i}" for i in range(51)])),
    "topic with a quote": ("watch.filter.topic", _watch(topic='a"b')),
    "long user": ("watch.filter.user", ci_pb2.Watch(filter=ci_pb2.Filter(user="u" * 101))),
    "long query": ("watch.filter.query", _watch(query="x" * 1001)),
    "query escaping its group": ("watch.filter.query", _watch(query="a) OR (b")),
    "query with a newline": ("watch.filter.query", _watch(query="a\nb")),
    "unknown operator": ("watch.filter.operator", _watch(operator=7)),
    "too many ignored pipelines": (
        "watch.filter.ignored_pipelines",
        _watch(ignored_pipelines=[f"p{i}" for i in range(21)]),
    ),
    "interval below the minimum": ("watch.refresh_interval", _interval(0, 50_000_000)),
    "interval above a day": ("watch.refresh_interval", _interval(86_401)),
    "negative interval": ("watch.refresh_interval", _interval(-5)),
    "nanos out of range": ("watch.refresh_interval", _interval(10, 1_000_000_000)),
    "empty filter": ("watch.filter.user", ci_pb2.Watch()),
    # Found by the descriptor-driven fuzzer (findings/ci.md): was UNKNOWN SerializeToJsonError.
    "seconds beyond Duration's range": ("watch.refresh_interval", _interval(10**12)),
    "seconds at int64 max": ("watch.refresh_interval", _interval(2**63 - 1)),
    "nanos of the other sign": ("watch.refresh_interval", _interval(60, -1)),
}


@pytest.mark.parametrize(("field", "watch"), list(BAD_WATCHES.values()), ids=list(BAD_WATCHES))
async def test_bad_watch_fields_are_refused_naming_the_field(
    stub: Any, field: str, watch: ci_pb2.Watch
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="w", watch=watch))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field), err.value.details()
    assert "\x1b" not in (err.value.details() or "")
    assert not (await stub.ListWatches(ci_pb2.ListWatchesRequest())).watches  # nothing stored
    # The same filter inline, and as an update of a good watch: refused alike.
    await stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id="good", watch=_watch()))
    update = ci_pb2.Watch()
    update.CopyFrom(watch)
    update.name = "watches/good"
    mask = field_mask_pb2.FieldMask(paths=["display_name", "filter", "refresh_interval"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateWatch(ci_pb2.UpdateWatchRequest(watch=update, update_mask=mask))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stored = await stub.GetWatch(ci_pb2.GetWatchRequest(name="watches/good"))
    assert stored.filter == _watch().filter  # unchanged
    if field.startswith("watch.filter"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetDashboard(ci_pb2.GetDashboardRequest(filter=watch.filter))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.value.details() or "").startswith(field.removeprefix("watch."))


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ci_pb2.CreateWatchRequest(watch_id="Bad ID", watch=_watch()), "watch_id"),
        (ci_pb2.CreateWatchRequest(watch_id="", watch=_watch()), "watch_id"),
        (ci_pb2.GetWatchRequest(name="hosts/x"), "name"),
        (ci_pb2.DeleteWatchRequest(name="watches/" + "x" * 64), "name"),
        (ci_pb2.ListWatchesRequest(page_size=-1), "page_size"),
        (ci_pb2.ListWatchesRequest(page_token="not a token"), "page_token"),
        (ci_pb2.ListPipelinesRequest(page_size=-1), "page_size"),
        (ci_pb2.ListPipelinesRequest(page_token="x" * 1001), "page_token"),
        (ci_pb2.ListWatchesRequest(page_token="x" * 1001), "page_token"),
        (ci_pb2.GetDashboardRequest(watch="watches/NO"), "watch"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
async def test_names_ids_and_pages_are_checked(stub: Any, request_: Any, field: str) -> None:
    method = {
        ci_pb2.CreateWatchRequest: stub.CreateWatch,
        ci_pb2.GetWatchRequest: stub.GetWatch,
        ci_pb2.DeleteWatchRequest: stub.DeleteWatch,
        ci_pb2.ListWatchesRequest: stub.ListWatches,
        ci_pb2.ListPipelinesRequest: stub.ListPipelines,
        ci_pb2.GetDashboardRequest: stub.GetDashboard,
    }[type(request_)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await method(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field), err.value.details()


async def test_a_bad_stored_watch_is_quarantined_not_fatal(
    replay: ReplayServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    store = WatchStore(state / "ci.sqlite3")
    store.create("good", _watch(projects=["openstack/nova"]))
    rows = {
        "garbage": "{not json",
        "invalid": '{"filter": {"user": "a b"}}',
        "typed": '{"filter": {"owners": 5}}',
        "short": '{"filter": {"user": "danms"}, "refreshInterval": "0.001s"}',
    }
    for watch_id, body in rows.items():
        store.store.execute(
            "INSERT INTO watches (id, body, created) VALUES (?, ?, 0)", (watch_id, body)
        )
    store.close()
    runtime = await start_service(SPEC, replay_config(replay.url, state))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as chan:
            stub = ci_pb2_grpc.CiServiceStub(chan)
            listed = {
                w.name: w for w in (await stub.ListWatches(ci_pb2.ListWatchesRequest())).watches
            }
            assert set(listed) == {f"watches/{n}" for n in ["good", *rows]}
            assert not listed["watches/good"].quarantine_reason
            for watch_id in rows:
                assert listed[f"watches/{watch_id}"].quarantine_reason, watch_id
            assert "parse" in listed["watches/garbage"].quarantine_reason
            assert "filter.user" in listed["watches/invalid"].quarantine_reason
            dash = await stub.GetDashboard(ci_pb2.GetDashboardRequest(watch="watches/good"))
            assert dash.watch == "watches/good"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetDashboard(ci_pb2.GetDashboardRequest(watch="watches/invalid"))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "quarantined" in (err.value.details() or "")
            # Fixed through the API: leaves quarantine and is polled.
            fix = ci_pb2.Watch(name="watches/invalid", filter=ci_pb2.Filter(user="danms"))
            fixed = await stub.UpdateWatch(
                ci_pb2.UpdateWatchRequest(
                    watch=fix, update_mask=field_mask_pb2.FieldMask(paths=["filter"])
                )
            )
            assert not fixed.quarantine_reason and fixed.filter.user == "danms"
            dash = await stub.GetDashboard(ci_pb2.GetDashboardRequest(watch="watches/invalid"))
            assert dash.watch == "watches/invalid"
            fix.name = "watches/garbage"
            await stub.UpdateWatch(ci_pb2.UpdateWatchRequest(watch=fix))
            # Deleted through the API.
            for watch_id in ("typed", "short"):
                await stub.DeleteWatch(ci_pb2.DeleteWatchRequest(name=f"watches/{watch_id}"))
            names = [w.name for w in (await stub.ListWatches(ci_pb2.ListWatchesRequest())).watches]
            assert names == ["watches/garbage", "watches/good", "watches/invalid"]
    finally:
        await runtime.stop(grace=0)
    # ... and everything loads after a restart.
    store = WatchStore(state / "ci.sqlite3")
    try:
        assert all(not w.quarantine_reason for w in store.list())
    finally:
        store.close()


def test_a_watch_stored_before_the_enum_prefixes_still_loads(tmp_path: Path) -> None:
    """A body written by the version before the prefixed enum values ("operator": "AND")
    keeps its meaning: AND, not the default OR that json_format would silently make of it."""
    store = WatchStore(tmp_path / "ci.sqlite3")
    old = {
        "and": '{"filter": {"owners": ["danms"], "projects": ["openstack/nova"], '
        '"operator": "AND"}, "createTime": "2026-11-01T10:00:00Z"}',
        "or": '{"filter": {"user": "danms", "operator": "OR"}}',
        "new": '{"filter": {"user": "danms", "operator": "OPERATOR_AND"}}',
    }
    for watch_id, body in old.items():
        store.store.execute(
            "INSERT INTO watches (id, body, created) VALUES (?, ?, 0)", (watch_id, body)
        )
    try:
        loaded = {w.name: w for w in store.list()}
        assert {n: w.filter.operator for n, w in loaded.items()} == {
            "watches/and": ci_pb2.OPERATOR_AND,
            "watches/or": ci_pb2.OPERATOR_OR,
            "watches/new": ci_pb2.OPERATOR_AND,
        }
        assert list(loaded["watches/and"].filter.projects) == ["openstack/nova"]
        assert loaded["watches/and"].create_time.seconds > 0
        assert not any(w.quarantine_reason for w in loaded.values())
        # Written back in today's form.
        store.replace("and", loaded["watches/and"])
        row = store.store.query_one("SELECT body FROM watches WHERE id = 'and'")
        assert row is not None and '"OPERATOR_AND"' in row["body"]
    finally:
        store.close()
