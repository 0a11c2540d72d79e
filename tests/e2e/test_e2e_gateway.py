"""Through the gateway only: the real services of the demo house, over gRPC and HTTP/JSON."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import grpc
from e2e_harness import E2E, OPERATOR, VIEWER, auth, rpc_error  # type: ignore[import-not-found]
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_testing import wait_for
from hearth_testing.browser import artifact, browser, chromium_missing


def http(
    e2e: E2E, method: str, path: str, token: str | None = VIEWER, body: Any = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        e2e.http + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def first_sse_event(e2e: E2E, path: str) -> dict[str, Any]:
    request = urllib.request.Request(e2e.http + path, headers={"Authorization": f"Bearer {VIEWER}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().strip()
            if line.startswith("data: "):
                return dict(json.loads(line.removeprefix("data: ")))
    raise AssertionError("the stream ended without an event")


def test_reflection_lists_every_service(e2e: E2E) -> None:
    database = ProtoReflectionDescriptorDatabase(e2e.channel)
    services = set(database.get_services())
    assert {
        "hearth.wake.v1.WakeService",
        "hearth.audio.v1.AudioService",
        "hearth.ci.v1.CiService",
        "hearth.gateway.v1.GatewayService",
    } <= services
    pool = descriptor_pool.DescriptorPool(database)
    ci = pool.FindServiceByName("hearth.ci.v1.CiService")
    assert ci.methods_by_name["WatchDashboard"].server_streaming


def test_ci_over_grpc_and_http(e2e: E2E) -> None:
    ci = ci_pb2_grpc.CiServiceStub(e2e.channel)
    watches = ci.ListWatches(ci_pb2.ListWatchesRequest(), metadata=auth(), timeout=10)
    assert "watches/mine" in [w.name for w in watches.watches]

    def dashboard_with_items() -> ci_pb2.Dashboard | None:
        d = ci.GetDashboard(
            ci_pb2.GetDashboardRequest(watch="watches/mine"), metadata=auth(), timeout=30
        )
        return d if any(q.items for p in d.pipelines for q in p.queues) else None

    dashboard = wait_for("a dashboard with queued items", dashboard_with_items)
    assert dashboard is not None  # (wait_for returns a truthy value)
    stream = ci.WatchDashboard(ci_pb2.WatchDashboardRequest(watch="watches/mine"), metadata=auth())
    first = next(iter(stream))
    assert first.kind == ci_pb2.DashboardEvent.KIND_SNAPSHOT
    assert {p.name for p in first.dashboard.pipelines} == {p.name for p in dashboard.pipelines}
    stream.cancel()

    code, body = http(e2e, "GET", "/v1/watches/mine/dashboard")
    assert code == 200 and body["watch"] == "watches/mine"
    assert any(q["items"] for p in body["pipelines"] for q in p["queues"])
    code, body = http(e2e, "GET", "/v1/pipelines")
    assert code == 200 and body["pipelines"]
    event = first_sse_event(e2e, "/v1/watches/mine/dashboard:watch")
    assert event["kind"] == "KIND_SNAPSHOT" and event["dashboard"]["pipelines"]
    code, body = http(e2e, "GET", "/v1/watches/nope")
    assert code == 404 and "watches/nope" in body["message"]


def test_auth_through_the_gateway(e2e: E2E) -> None:
    ci = ci_pb2_grpc.CiServiceStub(e2e.channel)
    watch = ci_pb2.Watch(filter=ci_pb2.Filter(owners=["danms"]))
    create = ci_pb2.CreateWatchRequest(watch_id="e2e", watch=watch)
    assert rpc_error(ci.ListWatches, ci_pb2.ListWatchesRequest()).code() is (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert rpc_error(ci.CreateWatch, create, metadata=auth(VIEWER)).code() is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    code, _ = http(e2e, "POST", "/v1/watches?watch_id=e2e", VIEWER, {"filter": {"owners": ["x"]}})
    assert code == 403
    code, _ = http(e2e, "GET", "/v1/watches", "wrong")
    assert code == 401
    created = ci.CreateWatch(create, metadata=auth(OPERATOR), timeout=10)
    assert created.name == "watches/e2e"
    code, _ = http(e2e, "DELETE", "/v1/watches/e2e", OPERATOR)
    assert code == 200
    gateway = e2e.house.services["gateway"]
    gateway.wait_for_line(r"audit who=olivia .*CreateWatch resource=e2e .*code=OK")
    gateway.wait_for_line(r"audit who=olivia .*DeleteWatch resource=watches/e2e .*code=OK")


def status(e2e: E2E) -> dict[str, gateway_pb2.Backend]:
    reply = gateway_pb2_grpc.GatewayServiceStub(e2e.channel).GetSystemStatus(
        gateway_pb2.GetSystemStatusRequest(), metadata=auth(), timeout=5
    )
    return {b.name: b for b in reply.backends}


def test_a_stopped_backend_fails_fast_and_comes_back(e2e: E2E) -> None:
    ci = ci_pb2_grpc.CiServiceStub(e2e.channel)
    wake = wake_pb2_grpc.WakeServiceStub(e2e.channel)
    assert status(e2e)["ci"].up
    e2e.house.services["ci"].stop()
    try:
        # Failing fast: UNAVAILABLE well inside the deadline, not DEADLINE_EXCEEDED at its end.
        error = rpc_error(ci.ListWatches, ci_pb2.ListWatchesRequest(), metadata=auth(), timeout=5)
        assert error.code() is grpc.StatusCode.UNAVAILABLE
        assert "backend ci" in (error.details() or "")
        wait_for("ci down in the system status", lambda: not status(e2e)["ci"].up)
        wake.ListHosts(wake_pb2.ListHostsRequest(), metadata=auth(), timeout=5)  # the rest works
        code, body = http(e2e, "GET", "/v1/watches")
        assert code == 503 and "backend ci" in body["message"]
    finally:
        e2e.house.start_service("ci")
    wait_for("ci up again in the system status", lambda: status(e2e)["ci"].up)
    watches = ci.ListWatches(ci_pb2.ListWatchesRequest(), metadata=auth(), timeout=10)
    assert "watches/mine" in [w.name for w in watches.watches]


async def test_the_ci_panel_shows_the_replayed_queues(e2e: E2E) -> None:
    missing = chromium_missing()
    assert missing is None, missing
    async with browser() as chromium:
        page = await chromium.new_page(viewport={"width": 1200, "height": 1000})
        await page.goto(e2e.http + "/")
        await page.fill("#token", VIEWER)
        await page.click("#token-form button[type=submit]")
        await page.wait_for_selector("#role:text('viewer')", timeout=15_000)
        await page.wait_for_selector("#pipelines .item[data-change]", timeout=30_000)
        shown = await page.locator("#pipelines .item[data-change]").evaluate_all(
            "items => items.map(i => i.dataset.change)"
        )
        ci = ci_pb2_grpc.CiServiceStub(e2e.channel)
        dashboard = await asyncio.to_thread(
            ci.GetDashboard,
            ci_pb2.GetDashboardRequest(watch="watches/mine"),
            metadata=auth(),
            timeout=30,
        )
        expected = {i.change for p in dashboard.pipelines for q in p.queues for i in q.items}
        assert set(shown) == expected
        await page.screenshot(path=artifact("e2e-ci-panel.png"), full_page=True)
