"""The replay server itself: Zuul documents with conditional requests, the v10 shape, and
Gerrit answers shaped as Gerrit's REST documentation says."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import aiohttp

from hearth_ci_lab.replay import ReplayServer, control

UUID_HEX = re.compile(r"^[0-9a-f]{32}$")
OPTIONS = "o=DETAILED_ACCOUNTS&o=CURRENT_REVISION&o=STAR"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def _get(url: str, **kw: Any) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.get(url, **kw) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def test_zuul_documents_and_conditional_requests(replay: ReplayServer) -> None:
    status, headers, body = await _get(f"{replay.url}/status.json")
    assert status == 200 and "Last-Modified" in headers
    doc = json.loads(body)
    assert (
        "management_event_queue" not in doc
        and "ref" not in doc["pipelines"][1]["change_queues"][2]["heads"][0][0]
    )  # the v2 recording stays v2 here
    status, _, _ = await _get(
        f"{replay.url}/status.json", headers={"If-Modified-Since": headers["Last-Modified"]}
    )
    assert status == 304
    _, _, body = await _get(f"{replay.url}/api/tenant/openstack/status")
    v3 = json.loads(body)
    item = v3["pipelines"][1]["change_queues"][2]["heads"][0][0]
    assert item["ref"] == "refs/changes/18/48418/1"
    assert item["project_canonical"] == "review.example.org/openstack/ceilometer"


async def test_v10_document_is_derived_from_the_recording(replay: ReplayServer) -> None:
    await control(replay.url, shape="v10")
    _, headers, body = await _get(f"{replay.url}/api/tenant/openstack/status")
    assert "max-age" in headers["Cache-Control"]
    doc = json.loads(body)
    assert "connection_event_queues" in doc
    gate = next(p for p in doc["pipelines"] if p["name"] == "gate")
    assert gate["manager"] == "dependent" and gate["triggers"] == [{"driver": "gerrit"}]
    head, behind = gate["change_queues"][2]["heads"][0]
    assert UUID_HEX.match(head["id"]) and behind["item_ahead"] == head["id"]
    assert head["refs"][0]["id"] == "48418,1" and behind["refs"][0]["id"] == "48423,2"
    assert all("estimated_time" in j and "pre_fail" in j for j in head["jobs"])
    status, _, body = await _get(f"{replay.url}/api/tenant/openstack/status/change/48418,1")
    assert status == 200 and [i["id"] for i in json.loads(body)] == [head["id"]]


async def test_gerrit_answers_have_the_guard_and_the_documented_shape(
    replay: ReplayServer,
) -> None:
    url = f"{replay.url}/a/changes/?q=status:open+owner:danms&q=is:starred&{OPTIONS}"
    status, headers, body = await _get(url, headers=_basic("danms", "secret"))
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body.startswith(")]}'\n")
    owned, starred = json.loads(body[5:])  # several q= -> a list of lists
    assert owned and starred
    change = owned[0]
    for key in ("id", "project", "branch", "change_id", "subject", "status", "created",
                "updated", "_number", "owner", "current_revision", "revisions"):  # fmt: skip
        assert key in change, key
    assert change["id"] == f"{change['project'].replace('/', '%2F')}~master~{change['change_id']}"
    assert set(change["owner"]) == {"_account_id", "name", "email", "username"}
    revision = change["revisions"][change["current_revision"]]
    assert revision["ref"].endswith(f"/{change['_number']}/{revision['_number']}")
    assert all(c["starred"] is True for c in starred)
    # One q= is a flat list; n= limits and marks the last entry.
    _, _, body = await _get(f"{replay.url}/changes/?q=status:open&n=3")
    limited = json.loads(body[5:])
    assert len(limited) == 3 and limited[-1]["_more_changes"] is True
    assert "starred" not in limited[0] and "revisions" not in limited[0]


async def test_gerrit_auth_and_errors(replay: ReplayServer) -> None:
    url = f"{replay.url}/a/changes/?q=is:starred"
    status, headers, _ = await _get(url, headers=_basic("danms", "wrong"))
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    status, _, body = await _get(f"{replay.url}/changes/?q=is:starred")
    assert status == 400 and "Must be signed in" in body
    status, _, body = await _get(f"{replay.url}/changes/?q=frobnicate:x")
    assert status == 400 and "Unsupported operator" in body
    await control(replay.url, gerrit_fault="noguard")
    _, _, body = await _get(f"{replay.url}/changes/?q=owner:danms")
    assert body.startswith("[")
