"""Through the gateway: the real wake service with the demo's sleeping devbox."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.request

from e2e_harness import E2E, OPERATOR, VIEWER, auth  # type: ignore[import-not-found]
from google.protobuf import field_mask_pb2

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_testing import wait_for
from hearth_testing.browser import artifact, browser, chromium_missing


def wake_stub(e2e: E2E) -> wake_pb2_grpc.WakeServiceStub:
    return wake_pb2_grpc.WakeServiceStub(e2e.channel)


def test_wake_methods_over_grpc_and_http(e2e: E2E) -> None:
    wake = wake_stub(e2e)
    hosts = wake.ListHosts(wake_pb2.ListHostsRequest(), metadata=auth(), timeout=10)
    assert "hosts/devbox" in [h.name for h in hosts.hosts]
    created = wake.CreateHost(
        wake_pb2.CreateHostRequest(
            host_id="nas", host=wake_pb2.Host(mac="02:00:00:00:0a:01", ipv4="198.18.0.200")
        ),
        metadata=auth(OPERATOR),
        timeout=10,
    )
    assert created.name == "hosts/nas"
    request = urllib.request.Request(
        f"{e2e.http}/v1/hosts/nas?update_mask=ipv4",
        method="PATCH",
        data=json.dumps({"ipv4": "198.18.0.201"}).encode(),
        headers={"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["ipv4"] == "198.18.0.201"
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{e2e.http}/v1/hosts/nas", headers={"Authorization": f"Bearer {VIEWER}"}
        ),
        timeout=10,
    ) as response:
        assert json.loads(response.read())["mac"] == "02:00:00:00:0a:01"
    wake.DeleteHost(wake_pb2.DeleteHostRequest(name="hosts/nas"), metadata=auth(OPERATOR))
    hosts = wake.ListHosts(wake_pb2.ListHostsRequest(), metadata=auth(), timeout=10)
    assert "hosts/nas" not in [h.name for h in hosts.hosts]


def test_200_concurrent_watches_each_receive_every_event(e2e: E2E) -> None:
    wake = wake_stub(e2e)
    direct = wake_pb2_grpc.WakeServiceStub(e2e.direct("wake"))
    events = 5
    watchers = 200
    received: list[list[int]] = []
    ready = threading.Barrier(watchers + 1, timeout=60)
    lock = threading.Lock()

    def watch() -> None:
        stream = wake.WatchHostEvents(
            wake_pb2.WatchHostEventsRequest(name="hosts/devbox"), metadata=auth()
        )
        got: list[int] = []
        for event in stream:
            if event.kind == wake_pb2.HostEvent.KIND_CURRENT:
                ready.wait()
            elif event.kind == wake_pb2.HostEvent.KIND_UPDATED:
                got.append(event.host.alive_timeout.seconds)
                if len(got) == events:
                    break
        stream.cancel()
        with lock:
            received.append(got)

    threads = [threading.Thread(target=watch, daemon=True) for _ in range(watchers)]
    for thread in threads:
        thread.start()
    ready.wait()
    for i in range(events):
        host = wake_pb2.Host(name="hosts/devbox")
        host.alive_timeout.FromSeconds(100 + i)
        direct.UpdateHost(
            wake_pb2.UpdateHostRequest(
                host=host, update_mask=field_mask_pb2.FieldMask(paths=["alive_timeout"])
            ),
            timeout=10,
        )
    for thread in threads:
        thread.join(60)
    assert len(received) == watchers
    assert all(got == [100 + i for i in range(events)] for got in received)


async def test_press_wake_and_watch_the_devbox_wake_up(e2e: E2E) -> None:
    missing = chromium_missing()
    assert missing is None, missing
    wake = wake_stub(e2e)

    def state() -> int:
        return wake.GetHost(
            wake_pb2.GetHostRequest(name="hosts/devbox"), metadata=auth(), timeout=5
        ).state

    await asyncio.to_thread(
        wait_for, "devbox asleep", lambda: state() == wake_pb2.HOST_STATE_ASLEEP, 20
    )
    async with browser() as chromium:
        page = await chromium.new_page(viewport={"width": 1200, "height": 900})
        await page.goto(e2e.http + "/")
        await page.fill("#token", OPERATOR)
        await page.click("#token-form button[type=submit]")
        await page.wait_for_selector(
            "tr[data-host=devbox] [data-state=HOST_STATE_ASLEEP]", timeout=15_000
        )
        await page.screenshot(path=artifact("e2e-wake-before.png"), full_page=True)
        await page.click("button[data-wake=devbox]")
        await page.wait_for_selector(
            "tr[data-host=devbox] [data-state=HOST_STATE_AWAKE]", timeout=30_000
        )
        await page.wait_for_selector("#wakes tr:has-text('MANUAL')", timeout=10_000)
        # The finished wake's reaction and resume times arrive live in the recent wakes.
        wakes = wake.ListWakes(wake_pb2.ListWakesRequest(parent="hosts/devbox"), metadata=auth())
        latest = wakes.wakes[0]
        assert (
            latest.trigger == wake_pb2.WAKE_TRIGGER_MANUAL
            and latest.outcome == wake_pb2.WAKE_OUTCOME_WOKE
        )
        assert latest.resume.ToNanoseconds() > 0
        row = page.locator(f"#wakes tr[data-wake='{latest.name}']")
        await row.locator("td:text-is('WOKE')").wait_for(timeout=10_000)
        timing = re.compile(r"^\d+(\.\d)? (ms|s|min)$")
        assert timing.match(await row.locator(".reaction").inner_text())
        assert timing.match(await row.locator(".resume").inner_text())
        await page.screenshot(path=artifact("e2e-wake-after.png"), full_page=True)
    assert await asyncio.to_thread(state) == wake_pb2.HOST_STATE_AWAKE
    e2e.house.services["gateway"].wait_for_line(
        r"audit who=olivia .*WakeHost resource=hosts/devbox"
    )
