"""The shared runtime in one process: error mapping, streaming metrics, paging, masks, store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_runtime import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    Runtime,
    ServiceConfig,
    ServiceSpec,
    Unavailable,
    start_service,
)
from hearth_runtime.broadcast import Broadcaster, Lagged
from hearth_runtime.errors import not_found
from hearth_runtime.grpc_metrics import HANDLED, STARTED
from hearth_runtime.resources import apply_update_mask, paginate, parse_name
from hearth_runtime.server import HEALTH_GAUGE
from hearth_runtime.store import Store
from hearth_testing import wait_for_async

WAKE = "hearth.wake.v1.WakeService"
ERRORS = {"exists": AlreadyExists, "precondition": FailedPrecondition, "down": Unavailable}


class _Servicer(wake_pb2_grpc.WakeServiceServicer):
    async def GetHost(self, request: Any, context: Any) -> wake_pb2.Host:
        parse_name("name", request.name, "hosts")
        raise not_found("host", request.name)

    async def CreateHost(self, request: Any, context: Any) -> wake_pb2.Host:
        raise InvalidArgument("host.mac", f"{request.host.mac!r} is not a MAC address")

    async def DeleteHost(self, request: Any, context: Any) -> Any:
        kind = request.name.removeprefix("hosts/")
        raise ERRORS[kind](f"{kind} happened", reason=kind.upper())

    async def WaitUntilAwake(self, request: Any, context: Any) -> wake_pb2.Host:
        # A slow call: takes request.timeout seconds.
        await asyncio.sleep(request.timeout.ToTimedelta().total_seconds())
        return wake_pb2.Host(name=request.name)

    async def WatchHostEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for i in range(3):
            yield wake_pb2.HostEvent(message=f"event {i}")


async def _setup(runtime: Runtime[ServiceConfig]) -> None:
    servicer = _Servicer()  # type: ignore[abstract]  # only the methods under test
    runtime.add_servicer(
        wake_pb2_grpc.add_WakeServiceServicer_to_server, servicer, "hearth.wake.v1.WakeService"
    )


@pytest.fixture
async def served() -> AsyncIterator[tuple[Runtime[ServiceConfig], grpc.aio.Channel]]:
    config = ServiceConfig(grpc_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    runtime = await start_service(ServiceSpec("test", ServiceConfig, _setup), config)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield runtime, channel
    await runtime.stop(grace=0)


@pytest.fixture
def stub(served: tuple[Runtime[ServiceConfig], grpc.aio.Channel]) -> Any:
    return wake_pb2_grpc.WakeServiceStub(served[1])


def _details(err: grpc.aio.AioRpcError) -> list[Any]:
    status = rpc_status.from_call(err)
    assert status is not None
    out = []
    for any_msg in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if any_msg.Is(cls.DESCRIPTOR):
                msg = cls()
                any_msg.Unpack(msg)
                out.append(msg)
    return out


async def test_invalid_argument_names_the_field_with_details(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateHost(wake_pb2.CreateHostRequest(host=wake_pb2.Host(mac="zz")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "host.mac: 'zz' is not a MAC address"
    info, bad = _details(err.value)
    assert info.reason == "INVALID_ARGUMENT" and info.domain == "test.hearth"
    assert info.metadata["field"] == "host.mac"
    assert bad.field_violations[0].field == "host.mac"
    assert (
        HANDLED.labels(
            "unary", "hearth.wake.v1.WakeService", "CreateHost", "INVALID_ARGUMENT"
        )._value.get()
        >= 1
    )


async def test_not_found_and_bad_name(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetHost(wake_pb2.GetHostRequest(name="hosts/nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "hosts/nope" in (err.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetHost(wake_pb2.GetHostRequest(name="zones/x"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("name:")


async def test_server_streaming_is_counted(stub: Any) -> None:
    labels = ("server_stream", "hearth.wake.v1.WakeService", "WatchHostEvents")
    started = STARTED.labels(*labels)._value.get()
    handled = HANDLED.labels(*labels, "OK")._value.get()
    events = [e.message async for e in stub.WatchHostEvents(wake_pb2.WatchHostEventsRequest())]
    assert events == ["event 0", "event 1", "event 2"]

    async def counted() -> bool:  # the server records the end just after the client sees it
        return bool(HANDLED.labels(*labels, "OK")._value.get() == handled + 1)

    await wait_for_async("the stream counted as handled", counted, within=5)
    assert STARTED.labels(*labels)._value.get() == started + 1


@pytest.mark.parametrize(
    ("kind", "code"),
    [("exists", grpc.StatusCode.ALREADY_EXISTS),
     ("precondition", grpc.StatusCode.FAILED_PRECONDITION),
     ("down", grpc.StatusCode.UNAVAILABLE)],
)  # fmt: skip
async def test_every_domain_error_maps_to_its_status(
    stub: Any, kind: str, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.DeleteHost(wake_pb2.DeleteHostRequest(name=f"hosts/{kind}"))
    assert err.value.code() == code
    assert err.value.details() == f"{kind} happened"
    (info,) = _details(err.value)
    assert (info.reason, info.domain) == (kind.upper(), "test.hearth")


def _slow(seconds: float) -> wake_pb2.WaitUntilAwakeRequest:
    request = wake_pb2.WaitUntilAwakeRequest(name="hosts/slow")
    request.timeout.FromMilliseconds(int(seconds * 1000))
    return request


async def test_shutdown_lets_in_flight_calls_finish_within_the_grace_period(
    served: tuple[Runtime[ServiceConfig], grpc.aio.Channel], stub: Any
) -> None:
    runtime, _ = served
    started = STARTED.labels("unary", WAKE, "WaitUntilAwake")
    before = started._value.get()
    short = asyncio.ensure_future(stub.WaitUntilAwake(_slow(0.5)))
    too_long = asyncio.ensure_future(stub.WaitUntilAwake(_slow(30)))

    async def both_in_flight() -> bool:
        return bool(started._value.get() == before + 2)

    await wait_for_async("both calls in flight", both_in_flight, within=5)
    await runtime.stop(grace=2)
    assert (await short).name == "hosts/slow"  # finished inside the grace period
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await too_long  # cut off when the grace period ended
    assert err.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.aio.AioRpcError):  # and nothing new is accepted
        await stub.WaitUntilAwake(_slow(0), timeout=2)


async def test_one_service_not_serving_leaves_the_rest_serving(
    served: tuple[Runtime[ServiceConfig], grpc.aio.Channel],
) -> None:
    runtime, channel = served
    health = health_pb2_grpc.HealthStub(channel)

    async def status(name: str) -> int:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
        return int(reply.status)

    await runtime.set_serving(False, WAKE)
    assert await status(WAKE) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await status("") == health_pb2.HealthCheckResponse.SERVING
    assert HEALTH_GAUGE.labels("test")._value.get() == 1  # follows the overall status
    await runtime.set_serving(False)
    assert await status("") == health_pb2.HealthCheckResponse.NOT_SERVING
    assert HEALTH_GAUGE.labels("test")._value.get() == 0
    await runtime.set_serving(True)
    assert await status(WAKE) == health_pb2.HealthCheckResponse.SERVING
    assert HEALTH_GAUGE.labels("test")._value.get() == 1


def test_paginate_walks_all_items_and_rejects_foreign_tokens() -> None:
    items = list(range(7))
    seen, token = [], ""
    while True:
        page, token = paginate(items, 3, token, context="f")
        seen += page
        if not token:
            break
    assert seen == items
    _, token = paginate(items, 3, "", context="f")
    with pytest.raises(InvalidArgument, match="page_token"):
        paginate(items, 3, token, context="other")
    with pytest.raises(InvalidArgument, match="page_token"):
        paginate(items, 3, "garbage!", context="f")
    with pytest.raises(InvalidArgument, match="page_size"):
        paginate(items, -1, "")


def test_update_mask() -> None:
    host = wake_pb2.Host(
        name="hosts/a", mac="02:00:00:00:00:01", ipv4="198.18.0.2", only_from=["198.18.0.0/24"]
    )
    patch = wake_pb2.Host(ipv4="198.18.0.3", only_from=[])
    out = apply_update_mask(
        host,
        patch,
        field_mask_pb2.FieldMask(paths=["ipv4", "only_from"]),
        allowed={"ipv4", "only_from", "mac"},
        message_field="host",
    )
    assert out.ipv4 == "198.18.0.3" and list(out.only_from) == [] and out.mac == host.mac
    assert host.ipv4 == "198.18.0.2"  # the original is untouched
    with pytest.raises(InvalidArgument, match="update_mask"):
        apply_update_mask(
            host,
            patch,
            field_mask_pb2.FieldMask(paths=["state"]),
            allowed={"ipv4"},
            message_field="host",
        )


def test_store_migrates_once_and_keeps_data(tmp_path: Path) -> None:
    migrations = [
        "CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)",
        "ALTER TABLE t ADD COLUMN n INTEGER DEFAULT 0",
    ]
    store = Store(tmp_path / "s.db", migrations[:1])
    store.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("a", "1"))
    store.close()
    store = Store(tmp_path / "s.db", migrations)
    assert store.schema_version == 2
    row = store.query_one("SELECT k, v, n FROM t")
    assert row is not None and tuple(row) == ("a", "1", 0)
    assert store.query_one("PRAGMA journal_mode")[0] == "wal"  # type: ignore[index]
    with pytest.raises(ValueError), store.transaction() as db:
        db.execute("INSERT INTO t (k, v) VALUES ('b', '2')")
        raise ValueError("roll back")
    assert len(store.query("SELECT * FROM t")) == 1
    store.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(tmp_path / "s.db", migrations[:1])


async def test_broadcaster_delivers_in_order_and_cuts_off_laggards() -> None:
    hub: Broadcaster[int] = Broadcaster(max_backlog=5)
    async with hub.subscribe() as fast, hub.subscribe() as slow:
        for i in range(3):
            hub.publish(i)
        got = [await fast.queue.get() for _ in range(3)]
        assert got == [0, 1, 2]
        for i in range(3, 10):
            hub.publish(i)
        with pytest.raises(Lagged):
            async for _ in slow:
                pass
    assert hub.subscribers == 0


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        ("GetHost", b"\x0a\x02\xff\xfe"),  # name: two bytes that are not UTF-8
        ("GetHost", b"\x0a\x05ab"),  # a length past the end of the message
        ("WatchHostEvents", b"\x0a\x01\x80"),  # the same mistakes reach a stream too
    ],
)
async def test_an_undecodable_request_is_invalid_argument_not_unknown(
    served: tuple[Runtime[ServiceConfig], grpc.aio.Channel], method: str, raw: bytes
) -> None:
    _, channel = served
    path = f"/{WAKE}/{method}"
    if method.startswith("Watch"):
        stream: Any = channel.unary_stream(path)  # raw bytes: no serializer
        call: Any = stream(raw)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
    else:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            unary: Any = channel.unary_unary(path)
            await unary(raw)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request message cannot be decoded" in (err.value.details() or "")
