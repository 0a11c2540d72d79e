"""Through the gateway: the real audio service with the demo's station and zone boxes, and
every method of every service."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request

import grpc
import pytest
from e2e_harness import E2E, OPERATOR, VIEWER, auth  # type: ignore[import-not-found]

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth_demo import audio as audio_demo
from hearth_gateway.catalog import Method, build_catalog
from hearth_testing import wait_for
from hearth_testing.browser import artifact, browser, chromium_missing


def audio_stub(e2e: E2E) -> audio_pb2_grpc.AudioServiceStub:
    return audio_pb2_grpc.AudioServiceStub(e2e.channel)


def zone(e2e: E2E, name: str) -> audio_pb2.Zone:
    return audio_stub(e2e).GetZone(
        audio_pb2.GetZoneRequest(name=f"zones/{name}"), metadata=auth(), timeout=10
    )


def rtp_receivers(name: str) -> str:
    """The zone box's own PulseAudio: which RTP receivers are loaded (the real subscription)."""
    daemon = audio_demo._zone_daemons[name]
    listing = daemon.pactl("list", "short", "modules")
    assert listing.returncode == 0, listing.stderr
    return "\n".join(line for line in listing.stdout.splitlines() if "module-rtp-recv" in line)


def test_audio_over_grpc_http_and_sse(e2e: E2E) -> None:
    audio = audio_stub(e2e)
    streams = audio.ListStreams(audio_pb2.ListStreamsRequest(), metadata=auth(), timeout=10)
    assert {s.name for s in streams.streams} == {"streams/radio", "streams/tv"}
    zones = audio.ListZones(audio_pb2.ListZonesRequest(), metadata=auth(), timeout=10)
    assert {z.name for z in zones.zones} == {"zones/kitchen", "zones/livingroom"}
    watch = audio.WatchAudio(audio_pb2.WatchAudioRequest(), metadata=auth())
    first = next(iter(watch))
    assert first.kind == audio_pb2.AudioEvent.KIND_CURRENT and len(first.zones) == 2
    watch.cancel()

    request = urllib.request.Request(
        f"{e2e.http}/v1/zones/livingroom?update_mask=volume",
        method="PATCH",
        data=json.dumps({"volume": 0.4}).encode(),
        headers={"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        assert json.loads(response.read())["volume"] == 0.4
    assert zone(e2e, "livingroom").volume == 0.4
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{e2e.http}/v1/player", headers={"Authorization": f"Bearer {VIEWER}"}
        ),
        timeout=15,
    ) as response:
        assert json.loads(response.read())["reachable"] is True
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{e2e.http}/v1/audio:watch", headers={"Authorization": f"Bearer {VIEWER}"}
        ),
        timeout=15,
    ) as response:
        for raw in response:
            if raw.startswith(b"data: "):
                event = json.loads(raw[6:])
                assert event["kind"] == "KIND_CURRENT" and len(event["zones"]) == 2
                break


async def test_click_a_patch_cell_and_the_zone_really_subscribes(e2e: E2E) -> None:
    missing = chromium_missing()
    assert missing is None, missing
    tv = await asyncio.to_thread(
        audio_stub(e2e).GetStream,
        audio_pb2.GetStreamRequest(name="streams/tv"),
        metadata=auth(),
        timeout=10,
    )
    assert zone(e2e, "kitchen").stream == "streams/radio"
    async with browser() as chromium:
        page = await chromium.new_page(viewport={"width": 1200, "height": 900})
        await page.goto(e2e.http + "/")
        await page.fill("#token", OPERATOR)
        await page.click("#token-form button[type=submit]")
        cell = "button.cell[data-zone=kitchen][data-stream=tv]"
        await page.wait_for_selector(cell, timeout=15_000)
        await page.click(cell)
        await page.wait_for_selector(f"{cell}[aria-pressed=true]", timeout=15_000)
        assert (
            await page.get_attribute(
                "button.cell[data-zone=kitchen][data-stream=radio]", "aria-pressed"
            )
            == "false"
        )
        # The zone box's PulseAudio now receives the tv stream's multicast group.

        def tv_receivers() -> str:
            text = rtp_receivers("kitchen")
            return text if tv.group in text else ""

        receivers = await asyncio.to_thread(
            wait_for, "an RTP receiver for the tv group in the kitchen", tv_receivers, 20
        )
        assert tv.group in receivers
        assert zone(e2e, "kitchen").stream == "streams/tv"
        await asyncio.to_thread(
            wait_for, "the kitchen receiving", lambda: zone(e2e, "kitchen").status.receiving, 20
        )
        await page.wait_for_selector(".zone[data-zone=kitchen] .badge.ok", timeout=20_000)
        await page.screenshot(path=artifact("e2e-audio-patched.png"), full_page=True)

        # Volume and mute from the page reach the kitchen box's own PulseAudio sink.
        kitchen = page.locator(".zone[data-zone=kitchen]")
        await kitchen.locator("input[type=range]").fill("60")
        await asyncio.to_thread(
            wait_for,
            "the kitchen sink at 60 %",
            lambda: "/  60% /" in sink("kitchen", "volume"),
            20,
        )
        assert zone(e2e, "kitchen").volume == pytest.approx(0.6)
        await kitchen.locator("output.volume:text-is('60%')").wait_for()
        await kitchen.locator("button[data-mute=kitchen]").click()
        await asyncio.to_thread(
            wait_for, "the kitchen sink muted", lambda: "yes" in sink("kitchen", "mute"), 20
        )
        await kitchen.locator("button[data-mute=kitchen][aria-pressed=true]").wait_for()
        await kitchen.locator("button[data-mute=kitchen]").click()  # leave the house as it was
        await asyncio.to_thread(
            wait_for, "the kitchen sink unmuted", lambda: "no" in sink("kitchen", "mute"), 20
        )
        await page.set_viewport_size({"width": 390, "height": 844})  # a phone
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await page.screenshot(path=artifact("e2e-house-phone.png"), full_page=True)


def sink(name: str, what: str) -> str:
    """The zone box's default sink's volume or mute line, as pactl prints it."""
    got = audio_demo._zone_daemons[name].pactl(f"get-sink-{what}", "@DEFAULT_SINK@")
    assert got.returncode == 0, got.stderr
    return got.stdout


SWEEP_SKIP = {
    # Would change the demo under the other tests' feet or take seconds by design.
    "hearth.audio.v1.AudioService/MeasureSync",
    "hearth.wake.v1.WakeService/WaitUntilAwake",
}


def test_every_method_of_every_service_is_served_through_the_gateway(e2e: E2E) -> None:
    """Each method, called with an empty request over gRPC and at its route over HTTP, is
    answered by the real service behind (never UNIMPLEMENTED or UNAVAILABLE)."""
    catalog = build_catalog(("wake", "audio", "ci"))
    checked = 0
    for method in catalog.methods.values():
        if method.backend == "gateway" or method.full_name in SWEEP_SKIP:
            continue
        code = grpc_code(e2e, method)
        assert code not in BROKEN, f"{method.full_name} over gRPC: {code}"
        for binding in method.http:
            status, message = http_status(e2e, binding.verb, route_path(binding.template))
            routed = not message.startswith("no API route")
            assert routed and status not in (500, 501, 503), (
                f"{binding.verb} {binding.template}: HTTP {status} {message}"
            )
        checked += 1
    assert checked >= 30


BROKEN = (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN)


def grpc_code(e2e: E2E, method: Method) -> grpc.StatusCode:
    request = method.request_cls().SerializeToString()
    try:
        if method.server_streaming:
            stream = e2e.channel.unary_stream(method.path)(
                request, metadata=auth(OPERATOR), timeout=5
            )
            next(iter(stream))
            stream.cancel()
        else:
            e2e.channel.unary_unary(method.path)(request, metadata=auth(OPERATOR), timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def route_path(template: str) -> str:
    """A concrete path for a template: every variable becomes an id that does not exist."""
    return re.sub(
        r"\{[^}=]+(?:=([^}]*))?\}", lambda m: (m.group(1) or "*").replace("*", "nope"), template
    )


def http_status(e2e: E2E, verb: str, path: str) -> tuple[int, str]:
    """The HTTP status and error message of one call (a stream only has to open)."""
    body = b"{}" if verb in ("POST", "PATCH", "PUT") else None
    request = urllib.request.Request(
        e2e.http + path,
        method=verb,
        data=body,
        headers={"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.headers["Content-Type"].startswith("text/event-stream"):
                response.readline()
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        return int(exc.code), str(json.loads(exc.read() or b"{}").get("message", ""))
