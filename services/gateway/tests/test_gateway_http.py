"""The HTTP/JSON face: routes from google.api.http, errors, SSE, CORS, OpenAPI, metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from gateway_harness import OPERATOR, VIEWER, MakeGateway, Running  # type: ignore[import-not-found]
from prometheus_client import REGISTRY

from hearth_testing import wait_for_async


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def request(
    gw: Running, method: str, path: str, token: str | None = VIEWER, **kw: Any
) -> tuple[int, Any]:
    headers = {**(bearer(token) if token else {}), **kw.pop("headers", {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gw.http + path, headers=headers, **kw) as response,
    ):
        return response.status, await response.json(content_type=None)


HOST = {"mac": "02:00:00:00:00:01", "ipv4": "198.18.0.9", "onlyFrom": ["198.18.0.0/24"]}


async def test_crud_and_custom_verbs_over_http(gw: Running) -> None:
    code, body = await request(gw, "POST", "/v1/hosts?host_id=devbox", OPERATOR, json=HOST)
    assert code == 200, body
    assert body["name"] == "hosts/devbox" and body["onlyFrom"] == ["198.18.0.0/24"]
    assert body["state"] == "HOST_STATE_ASLEEP"
    code, body = await request(gw, "GET", "/v1/hosts/devbox")
    assert code == 200 and body["mac"] == "02:00:00:00:00:01"
    code, body = await request(gw, "GET", "/v1/hosts?page_size=10")
    assert code == 200 and [h["name"] for h in body["hosts"]] == ["hosts/devbox"]
    code, body = await request(gw, "POST", "/v1/hosts/devbox:wake", OPERATOR, json={})
    assert (
        code == 200 and body["host"] == "hosts/devbox" and body["trigger"] == "WAKE_TRIGGER_MANUAL"
    )
    code, body = await request(
        gw, "POST", "/v1/zones/kitchen:subscribe", OPERATOR, json={"stream": "streams/radio"}
    )
    assert code == 200 and body["stream"] == "streams/radio"
    code, body = await request(gw, "GET", "/v1/pipelines")
    assert code == 200 and body["zuul"]["message"] == "Zuul is being upgraded"
    code, body = await request(gw, "GET", "/v1/system/status")
    assert code == 200 and {b["name"] for b in body["backends"]} == {"wake", "audio", "ci"}
    code, body = await request(gw, "DELETE", "/v1/hosts/devbox", OPERATOR)
    assert code == 200 and body == {}


async def test_errors_follow_google_rpc_code(gw: Running) -> None:
    code, body = await request(gw, "GET", "/v1/hosts/nope")
    assert code == 404 and body["code"] == 5 and "hosts/nope" in body["message"]
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert body["details"][0]["domain"] == "wake.hearth"
    code, body = await request(gw, "POST", "/v1/hosts", OPERATOR, json=HOST)
    assert code == 400 and "host_id" in body["message"]
    assert any(d.get("fieldViolations") for d in body["details"])
    code, body = await request(gw, "GET", "/v1/hosts?page_size=lots")
    assert code == 400 and "page_size" in body["message"]
    code, body = await request(gw, "POST", "/v1/hosts?host_id=x", OPERATOR, data=b"{nope")
    assert code == 400 and "JSON" in body["message"]
    code, body = await request(gw, "POST", "/v1/hosts/devbox:waitUntilAwake?timeout=0.3", OPERATOR,
                               json={})  # fmt: skip
    assert code == 404  # no such host: answered before the deadline
    await request(gw, "POST", "/v1/hosts?host_id=devbox", OPERATOR, json=HOST)
    code, body = await request(gw, "POST", "/v1/hosts/devbox:waitUntilAwake?timeout=0.3s",
                               OPERATOR, json={})  # fmt: skip
    assert code == 504 and body["code"] == 4  # DEADLINE_EXCEEDED: the host sleeps on
    code, body = await request(gw, "GET", "/v1/hosts?timeout=soon")
    assert code == 400 and "timeout" in body["message"]
    code, body = await request(gw, "GET", "/v1/nothing/here")
    assert code == 404
    code, body = await request(gw, "PUT", "/v1/hosts/devbox")
    assert code == 405 and body["code"] == 12  # HTTP's Method Not Allowed, gRPC's UNIMPLEMENTED


async def test_http_auth_codes(gw: Running) -> None:
    code, body = await request(gw, "GET", "/v1/hosts", None)
    assert code == 401 and body["code"] == 16
    code, _ = await request(gw, "GET", "/v1/hosts", "not-a-token")
    assert code == 401
    code, body = await request(gw, "POST", "/v1/hosts/devbox:wake", VIEWER, json={})
    assert code == 403 and body["code"] == 7 and "operator" in body["message"]
    code, _ = await request(gw, "GET", f"/v1/hosts?access_token={VIEWER}", None)
    assert code == 200


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    events = []
    async for raw in response.content:
        line = raw.decode().strip()
        if line.startswith("data: "):
            events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == count:
                break
    return events


async def test_watch_methods_are_server_sent_events(gw: Running) -> None:
    await request(gw, "POST", "/v1/hosts?host_id=devbox", OPERATOR, json=HOST)
    async with (
        aiohttp.ClientSession() as session,
        session.get(gw.http + "/v1/hosts:watch", headers=bearer(VIEWER)) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        (current,) = await asyncio.wait_for(read_events(response, 1), 5)
        assert current["kind"] == "KIND_CURRENT" and current["host"]["name"] == "hosts/devbox"
        await request(gw, "POST", "/v1/hosts/devbox:wake", OPERATOR, json={})
        (alive,) = await asyncio.wait_for(read_events(response, 1), 5)
        assert alive["kind"] == "KIND_ALIVE" and alive["host"]["state"] == "HOST_STATE_AWAKE"
    # A refused watch is a plain HTTP error, not an empty stream.
    code, body = await request(gw, "GET", "/v1/audio:watch", None)
    assert code == 401 and body["code"] == 16


async def test_cors_preflight_and_headers(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(cors_origins=["http://phone.lan"])
    preflight = {
        "Origin": "http://phone.lan",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with aiohttp.ClientSession() as session:
        async with session.options(gw.http + "/v1/hosts/x:wake", headers=preflight) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "http://phone.lan"
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
            assert "authorization" in r.headers["Access-Control-Allow-Headers"]
        evil = {**preflight, "Origin": "http://evil.example"}
        async with session.options(gw.http + "/v1/hosts/x:wake", headers=evil) as r:
            assert r.status == 403
            assert "Access-Control-Allow-Origin" not in r.headers
        headers = {"Origin": "http://phone.lan", **bearer(VIEWER)}
        async with session.get(gw.http + "/v1/hosts", headers=headers) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "http://phone.lan"


async def test_openapi_document_covers_every_route(gw: Running) -> None:
    code, doc = await request(gw, "GET", "/openapi.json", None)
    assert code == 200 and doc["openapi"].startswith("3.")
    wake = doc["paths"]["/v1/{name}:wake"]["post"]
    assert wake["operationId"] == "WakeService_WakeHost"
    assert doc["paths"]["/v1/hosts:watch"]["get"]["responses"]["200"]["content"].get(
        "text/event-stream"
    )
    host = doc["components"]["schemas"]["hearth.wake.v1.Host"]["properties"]
    assert host["state"]["enum"][0] == "HOST_STATE_UNSPECIFIED"
    assert host["lastSeen"]["format"] == "date-time"
    assert "/v1/{watch}/dashboard:watch" in doc["paths"]
    assert "/v1/system/status" in doc["paths"]


def sample(name: str, **labels: str) -> float:
    """A metric's value in this process's registry (summed over the other labels)."""
    return sum(
        float(found.value)
        for family in REGISTRY.collect()
        for found in family.samples
        if found.name == name and all(found.labels.get(k) == v for k, v in labels.items())
    )


async def test_web_page_and_metrics(gw: Running) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gw.http + "/") as response,
    ):
        assert response.status == 200 and "hearth" in await response.text()
    before = sample(
        "hearth_gateway_http_requests_total", method="GET", route="/v1/hosts", code="200"
    )
    await request(gw, "GET", "/v1/hosts")
    after = sample(
        "hearth_gateway_http_requests_total", method="GET", route="/v1/hosts", code="200"
    )
    assert after == before + 1
    assert sample("hearth_gateway_http_request_duration_seconds_count", route="/v1/hosts") >= 1
    assert sample("hearth_gateway_backend_up", backend="ci") == 1
    handled = sample(
        "grpc_server_handled_total",
        grpc_service="hearth.wake.v1.WakeService",
        grpc_method="ListHosts",
        grpc_code="OK",
    )
    assert handled >= 1  # the runtime counts what the gateway serves, forwarded calls included


async def test_a_closed_event_stream_ends_the_backend_watch(gw: Running) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.get(gw.http + "/v1/audio:watch", headers=bearer(VIEWER))
        (current,) = await asyncio.wait_for(read_events(response, 1), 5)
        assert current["kind"] == "KIND_CURRENT" and gw.backends.audio.events.subscribers == 1
        assert sample("hearth_gateway_active_streams", face="sse") == 1
        # The stream's heartbeat runs under the runtime's supervisor, named for the stream.
        assert heartbeats() == 1
        response.close()

    async def backend_watch_ended() -> bool:
        return gw.backends.audio.events.subscribers == 0

    await wait_for_async("the backend's WatchAudio to end", backend_watch_ended, within=5)
    assert sample("hearth_gateway_active_streams", face="sse") == 0

    async def heartbeat_ended() -> bool:
        return heartbeats() == 0

    await wait_for_async("the heartbeat to end", heartbeat_ended, within=5)


def heartbeats() -> int:
    """SSE heartbeat tasks alive (the supervisor names each "sse-heartbeat-N")."""
    return sum(
        1
        for task in asyncio.all_tasks()
        if task.get_name().startswith("sse-heartbeat-") and not task.done()
    )
