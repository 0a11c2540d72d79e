# ruff: noqa: F811  (pytest fixtures imported from gateway_fixtures are parameters here)
"""The live web page in a real headless Chromium, against the gateway and contract doubles."""

from __future__ import annotations

import pytest
from gateway_fixtures import OPERATOR, VIEWER, Running, gw, make_gateway  # type: ignore[import-not-found]  # noqa: F401

from hearth.audio.v1 import audio_pb2
from hearth.wake.v1 import wake_pb2
from hearth_testing.browser import artifact, browser, chromium_missing

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))


async def test_page_is_live_and_acts_for_an_operator(gw: Running) -> None:
    gw.backends.wake.hosts["hosts/devbox"] = wake_pb2.Host(
        name="hosts/devbox", state=wake_pb2.ASLEEP
    )
    async with browser() as chromium:
        page = await chromium.new_page(viewport={"width": 1200, "height": 900})
        await page.goto(gw.http + "/")
        # Without a token (and no anonymous reading) the page asks for one.
        await page.wait_for_selector("#role:text('token needed')", timeout=10_000)
        await page.fill("#token", OPERATOR)
        await page.click("#token-form button[type=submit]")
        await page.wait_for_selector("#role:text('operator')", timeout=10_000)
        await page.wait_for_selector("[data-backend=ci].up")

        # Machines: Wake, then the state arrives over SSE without a reload.
        state = page.locator("tr[data-host=devbox] [data-state]")
        await state.wait_for()
        assert await state.get_attribute("data-state") == "ASLEEP"
        await page.click("button[data-wake=devbox]")
        await page.wait_for_selector("tr[data-host=devbox] [data-state=AWAKE]", timeout=10_000)
        await page.wait_for_selector("#wakes tr:has-text('MANUAL')")

        # Audio: click a patch cell; the zone in the backend is subscribed.
        cell = "button.cell[data-zone=office][data-stream=tv]"
        await page.click(cell)
        await page.wait_for_selector(f"{cell}[aria-pressed=true]", timeout=10_000)
        assert gw.backends.audio.zones["zones/office"].stream == "streams/tv"
        # A change made elsewhere shows up live too.
        gw.backends.audio.zones["zones/kitchen"].stream = "streams/radio"
        gw.backends.audio.events.publish(
            audio_pb2.AudioEvent(
                kind=audio_pb2.AudioEvent.ZONE_CHANGED,
                zones=[gw.backends.audio.zones["zones/kitchen"]],
            )
        )
        await page.wait_for_selector(
            "button.cell[data-zone=kitchen][data-stream=radio][aria-pressed=true]"
        )
        await page.click("button[data-action=PAUSE]")
        await page.wait_for_selector(".player:has-text('PAUSED')")

        # CI: the watch's queues, coloured, with the Zuul banner.
        await page.wait_for_selector(".item.FAILING[data-change='12345,6']")
        assert await page.locator("#zuul-banner").inner_text() == "Zuul is being upgraded"
        await page.screenshot(path=artifact("gateway-page-desktop.png"), full_page=True)

        await page.set_viewport_size({"width": 390, "height": 844})  # a phone
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways at phone width ({width}px)"
        await page.screenshot(path=artifact("gateway-page-phone.png"), full_page=True)


async def test_a_viewer_is_told_what_is_missing(gw: Running) -> None:
    gw.backends.wake.hosts["hosts/devbox"] = wake_pb2.Host(name="hosts/devbox")
    async with browser() as chromium:
        page = await chromium.new_page()
        await page.goto(gw.http + "/")
        await page.fill("#token", VIEWER)
        await page.click("#token-form button[type=submit]")
        await page.wait_for_selector("#role:text('viewer')", timeout=10_000)
        await page.click("button[data-wake=devbox]")
        toast = page.locator("#toast")
        await toast.wait_for(state="visible")
        assert "operator" in await toast.inner_text()
        assert gw.backends.wake.hosts["hosts/devbox"].state != wake_pb2.AWAKE
