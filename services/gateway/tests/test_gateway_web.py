"""The live web page in a real headless Chromium, against the gateway and contract doubles."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from gateway_doubles import DASHBOARD  # type: ignore[import-not-found]
from gateway_harness import OPERATOR, VIEWER, Running  # type: ignore[import-not-found]

from hearth.audio.v1 import audio_pb2
from hearth.ci.v1 import ci_pb2
from hearth.wake.v1 import wake_pb2
from hearth_testing import wait_for_async
from hearth_testing.browser import artifact, browser, chromium_missing

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))


async def test_page_is_live_and_acts_for_an_operator(gw: Running) -> None:
    gw.backends.wake.hosts["hosts/devbox"] = wake_pb2.Host(
        name="hosts/devbox", state=wake_pb2.HOST_STATE_ASLEEP
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
        assert await state.get_attribute("data-state") == "HOST_STATE_ASLEEP"
        await page.click("button[data-wake=devbox]")
        await page.wait_for_selector(
            "tr[data-host=devbox] [data-state=HOST_STATE_AWAKE]", timeout=10_000
        )
        # The wake arrives in the recent wakes with its reaction and resume times.
        wake = page.locator("#wakes tr[data-wake='hosts/devbox/wakes/1']")
        await wake.wait_for()
        assert "MANUAL" in await wake.inner_text() and "WOKE" in await wake.inner_text()
        assert await wake.locator(".reaction").inner_text() == "2 ms"
        assert await wake.locator(".resume").inner_text() == "1.5 s"

        # Audio: click a patch cell; the zone in the backend is subscribed.
        cell = "button.cell[data-zone=office][data-stream=tv]"
        await page.click(cell)
        await page.wait_for_selector(f"{cell}[aria-pressed=true]", timeout=10_000)
        assert gw.backends.audio.zones["zones/office"].stream == "streams/tv"
        # A change made elsewhere shows up live too.
        gw.backends.audio.zones["zones/kitchen"].stream = "streams/radio"
        gw.backends.audio.events.publish(
            audio_pb2.AudioEvent(
                kind=audio_pb2.AudioEvent.KIND_ZONE_CHANGED,
                zones=[gw.backends.audio.zones["zones/kitchen"]],
            )
        )
        await page.wait_for_selector(
            "button.cell[data-zone=kitchen][data-stream=radio][aria-pressed=true]"
        )
        await page.click("button[data-action=ACTION_PAUSE]")
        await page.wait_for_selector(".player:has-text('PAUSED')")

        # CI: the watch's queues, coloured, with the Zuul banner.
        await page.wait_for_selector(".item.ITEM_STATUS_FAILING[data-change='12345,6']")
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
        assert gw.backends.wake.hosts["hosts/devbox"].state != wake_pb2.HOST_STATE_AWAKE


async def operator_page(chromium: Any, gw: Running) -> Any:
    page = await chromium.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(gw.http + "/")
    await page.fill("#token", OPERATOR)
    await page.click("#token-form button[type=submit]")
    await page.wait_for_selector("#role:text('operator')", timeout=10_000)
    return page


async def test_audio_controls_change_the_backend(gw: Running) -> None:
    audio = gw.backends.audio
    office = audio.zones["zones/office"]
    audio.zones["zones/kitchen"].ClearField("volume")  # unset means 100 % (the contract)

    async def office_is(**fields: object) -> bool:
        return all(getattr(office, k) == v for k, v in fields.items())

    async with browser() as chromium:
        page = await operator_page(chromium, gw)
        zone = page.locator(".zone[data-zone=office]")
        await zone.locator("output.volume:text-is('50%')").wait_for(timeout=10_000)

        # Volume: the slider's new value reaches the zone, and the page shows it.
        await zone.locator("input[type=range]").fill("80")
        await wait_for_async("office at 80 %", lambda: office_is(volume=0.8), within=10)
        await zone.locator("output.volume:text-is('80%')").wait_for()
        # Mute, then unmute: the zone's muted flag follows, the button says what it will do.
        mute = zone.locator("button[data-mute=office]")
        await mute.click()
        await wait_for_async("office muted", lambda: office_is(muted=True), within=10)
        await zone.locator(
            "button[data-mute=office][aria-pressed=true]:text-is('Unmute')"
        ).wait_for()
        await mute.click()
        await wait_for_async("office unmuted", lambda: office_is(muted=False), within=10)
        await zone.locator(
            "button[data-mute=office][aria-pressed=false]:text-is('Mute')"
        ).wait_for()
        assert office.volume == pytest.approx(0.8)  # muting left the volume alone
        kitchen = page.locator(".zone[data-zone=kitchen]")
        assert await kitchen.locator("output.volume").inner_text() == "100%"
        # A volume changed elsewhere moves the slider live.
        audio.zones["zones/kitchen"].volume = 0.35
        audio.events.publish(
            audio_pb2.AudioEvent(
                kind=audio_pb2.AudioEvent.KIND_ZONE_CHANGED, zones=[audio.zones["zones/kitchen"]]
            )
        )
        await kitchen.locator("output.volume:text-is('35%')").wait_for()
        assert await kitchen.locator("input[type=range]").input_value() == "35"

        # Now playing: pause, next, play reach the player; the page shows song and state.
        player = page.locator("#player")
        await player.locator("strong:text-is('So What')").wait_for()
        await page.click("button[data-action=ACTION_PAUSE]")
        await player.locator("[data-player-state=PLAYER_STATE_PAUSED]").wait_for()
        await page.click("button[data-action=ACTION_NEXT]")
        await player.locator("strong:text-is('Blue in Green')").wait_for()
        await page.click("button[data-action=ACTION_PLAY]")
        await player.locator("[data-player-state=PLAYER_STATE_PLAYING]").wait_for()
        assert audio.actions == ["ACTION_PAUSE", "ACTION_NEXT", "ACTION_PLAY"]
        assert audio.player.current_song.title == "Blue in Green"
        await page.screenshot(path=artifact("gateway-page-audio.png"), full_page=True)


async def test_ci_progress_eta_and_earlier_wakes_are_shown(gw: Running) -> None:
    earlier = wake_pb2.Wake(
        name="hosts/nas/wakes/7",
        host="hosts/nas",
        trigger=wake_pb2.WAKE_TRIGGER_ARP,
        outcome=wake_pb2.WAKE_OUTCOME_WOKE,
    )
    earlier.demand_time.GetCurrentTime()
    earlier.reaction.FromMilliseconds(250)
    earlier.resume.FromSeconds(42)
    gw.backends.wake.wakes.append(earlier)
    async with browser() as chromium:
        page = await operator_page(chromium, gw)
        # Wakes recorded before the page opened, with their reaction and resume times.
        row = page.locator("#wakes tr[data-wake='hosts/nas/wakes/7']")
        await row.wait_for(timeout=10_000)
        assert await row.locator(".reaction").inner_text() == "250 ms"
        assert await row.locator(".resume").inner_text() == "42.0 s"

        # CI: a progress bar as wide as the item's progress, and its ETA.
        item = page.locator(".item[data-change='12345,6']")
        await item.wait_for(timeout=10_000)
        assert await item.locator(".eta").inner_text() == "50% · ETA 5 min"
        bar = item.locator(".progress > div")
        assert await bar.evaluate("b => b.style.width") == "50%"
        docs = page.locator(".item[data-change='12350,1']")
        assert await docs.locator(".eta").inner_text() == "0%"  # no ETA: none is shown
        # A later snapshot moves the bar and the ETA live.
        later = copy.deepcopy(DASHBOARD)
        moved = later.pipelines[0].queues[0].items[0]
        moved.progress = 0.75
        moved.eta.FromSeconds(45)
        gw.backends.ci.events.publish(
            ci_pb2.DashboardEvent(kind=ci_pb2.DashboardEvent.KIND_SNAPSHOT, dashboard=later)
        )
        await item.locator(".eta:text-is('75% · ETA 45.0 s')").wait_for(timeout=10_000)
        assert await bar.evaluate("b => b.style.width") == "75%"
        await page.screenshot(path=artifact("gateway-page-ci.png"), full_page=True)


HOSTILE = "<img src=x onerror=window.__pwned=1>"


async def test_upstream_text_and_links_stay_inert(gw: Running) -> None:
    """A host named like HTML and a CI item whose link is javascript: are shown as text;
    nothing runs, nothing is clickable, and the page breaks none of its own CSP."""
    gw.backends.wake.hosts[f"hosts/{HOSTILE}"] = wake_pb2.Host(
        name=f"hosts/{HOSTILE}", state=wake_pb2.HOST_STATE_ASLEEP
    )
    hostile = copy.deepcopy(DASHBOARD)
    item = hostile.pipelines[0].queues[0].items[0]
    item.url = "javascript:window.__pwned=2"
    item.subject = "<b id=bold>not bold</b>"
    item.project = "javascript:window.__pwned=3"
    item.change = "666,1"
    async with browser() as chromium:
        page = await chromium.new_page(viewport={"width": 1200, "height": 900})
        violations: list[str] = []
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        await page.goto(gw.http + "/")
        await page.fill("#token", OPERATOR)
        await page.click("#token-form button[type=submit]")
        await page.wait_for_selector("#role:text('operator')", timeout=10_000)
        await page.wait_for_selector("#hosts tr[data-host]", timeout=10_000)
        cell = page.locator("#hosts tr td").first
        assert await cell.inner_text() == HOSTILE
        assert await page.locator("#hosts img").count() == 0
        gw.backends.ci.events.publish(
            ci_pb2.DashboardEvent(kind=ci_pb2.DashboardEvent.KIND_SNAPSHOT, dashboard=hostile)
        )
        shown = page.locator(".item[data-change='666,1']")
        await shown.wait_for(timeout=10_000)
        assert "<b id=bold>not bold</b>" in await shown.inner_text()
        assert await page.locator("#bold").count() == 0
        assert await shown.locator("a").count() == 0  # no link for a javascript: URL
        await shown.locator(".change").click()
        await page.wait_for_timeout(300)
        assert await page.evaluate("window.__pwned") is None
        # A real http(s) link stays a link.
        good = copy.deepcopy(hostile)
        good.pipelines[0].queues[0].items[0].url = "https://review.example/666"
        gw.backends.ci.events.publish(
            ci_pb2.DashboardEvent(kind=ci_pb2.DashboardEvent.KIND_SNAPSHOT, dashboard=good)
        )
        link = shown.locator("a")
        await link.wait_for(timeout=10_000)
        assert await link.get_attribute("href") == "https://review.example/666"
        # The progress bar's width is set through the CSSOM, which the CSP allows.
        assert await shown.locator(".progress > div").evaluate("b => b.style.width") == "50%"
        await page.screenshot(path=artifact("gateway-page-hostile.png"), full_page=True)
    assert violations == []
