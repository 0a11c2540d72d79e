"""A real HTTP server that stands in for Zuul and Gerrit, replaying recorded Zuul documents.

    python -m hearth_ci_lab.replay --fixtures ../shared/fixtures/zuul --listen 127.0.0.1:8081

Zuul:   ``GET /status.json`` (v2 shape) and ``GET /api/tenant/{t}/status`` (v3 shape, or
        the v10 shape derived in code from the recording when ``shape`` is "v10"), with
        ``Last-Modified`` and ``If-Modified-Since`` -> 304;
        ``GET /api/tenant/{t}/status/change/{N,PS}`` (a list of items).
Gerrit: ``GET /changes/?q=...`` and ``/a/changes/`` (HTTP basic auth), ChangeInfo answers for
        every change in the document, shaped as Gerrit's REST documentation says, the
        ``)]}'`` guard first. Owners, subjects, stars and watches are synthesised
        deterministically from the change number.
Control (for tests, the demo and benchmarks): ``GET/POST /_control`` with JSON
        ``{"document": "v2-status-tree.json", "shape": "v3"|"v10", "scale": 10,
        "zuul_fault": "500"|"timeout"|"truncated"|"", "gerrit_fault":
        "500"|"noguard"|"401"|"timeout"|""}``; ``"upload": {...}`` serves a v2 document
        given in the request (a variant a test derived from a recording) until the next
        ``document``; ``"new_patchset": [N, ...]`` uploads a new patchset of those changes
        in Gerrit (``updated`` moves on); ``"zuul_raw": "<text>"`` / ``"gerrit_raw": "<text>"``
        serve that text verbatim as every Zuul status / Gerrit ``/changes/`` answer (any
        bytes, malformed on purpose; ``null`` stops it). GET also returns request counters.
        :func:`control` / :func:`control_sync` and :func:`wait_until_up` are its clients.

Timestamps are shifted so the recording looks as if it were taken a minute ago.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import json
import os
import re
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from hearth_testing import wait_for

GUARD = ")]}'\n"
UPLOADED = "(uploaded)"
ACCOUNTS = [
    ("danms", "Dan Smith"),
    ("alice", "Alice Liddell"),
    ("bob", "Bob Builder"),
    ("carol", "Carol Shaw"),
    ("dave", "Dave Null"),
    ("erin", "Erin Hunt"),
]
WATCHED_PROJECTS = frozenset({"openstack/nova"})
_VERBS = ["Fix", "Add", "Remove", "Refactor", "Document", "Speed up", "Test", "Clean up"]
_NOUNS = [
    "quota checks",
    "the scheduler",
    "volume attach",
    "config parsing",
    "unit tests",
    "API validation",
    "the RPC layer",
    "log messages",
    "db migrations",
    "race in resize",
]
_ITEM_ID = re.compile(r"^(\d+),(\d+)$")
UUID_NS = uuid.UUID("6b1f4e4e-1f0b-4c36-9a3c-0c1e2a7d5c10")


def default_fixtures() -> Path:
    """``$HEARTH_CI_FIXTURES``, else the nearest ``shared/fixtures/zuul`` beside the checkout
    or one of its ancestors (a worktree lives deeper than the main checkout)."""
    if os.environ.get("HEARTH_CI_FIXTURES"):
        return Path(os.environ["HEARTH_CI_FIXTURES"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "fixtures" / "zuul"
        if (candidate / "v2-status-tree.json").is_file():
            return candidate
    return Path("fixtures/zuul")


# ----------------------------------------------------------------- document transforms


def iter_items(doc: dict[str, Any]) -> Any:
    for pipeline in doc.get("pipelines") or []:
        for queue in pipeline.get("change_queues") or []:
            for head in queue.get("heads") or []:
                yield from head


def shift_times(doc: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """Move every timestamp so the newest enqueue happened a minute before ``now_ms``."""
    doc = copy.deepcopy(doc)
    times = [i["enqueue_time"] for i in iter_items(doc) if i.get("enqueue_time")]
    if not times:
        return doc
    shift = now_ms - 60_000 - max(times)
    for item in iter_items(doc):
        if item.get("enqueue_time"):
            item["enqueue_time"] += shift
        for job in item.get("jobs") or []:
            for key in ("start_time", "end_time"):
                if job.get(key):
                    job[key] += shift / 1000.0
    if doc.get("last_reconfigured"):
        doc["last_reconfigured"] += shift
    return doc


def scale(doc: dict[str, Any], factor: int) -> dict[str, Any]:
    """``factor`` copies of every queue, change numbers offset by 100000 per copy."""
    doc = copy.deepcopy(doc)
    if factor <= 1:
        return doc

    def renumber(value: str | None, k: int) -> str | None:
        match = _ITEM_ID.match(value or "")
        if not match:
            return value if value is None else f"{value}-{k}"
        return f"{int(match.group(1)) + 100000 * k},{match.group(2)}"

    for pipeline in doc.get("pipelines") or []:
        queues = pipeline.get("change_queues") or []
        copies = []
        for k in range(1, factor):
            for queue in queues:
                twin = copy.deepcopy(queue)
                twin["name"] = f"{queue['name']} #{k}"
                for head in twin.get("heads") or []:
                    for item in head:
                        item["id"] = renumber(item.get("id"), k)
                        item["item_ahead"] = renumber(item.get("item_ahead"), k)
                        item["items_behind"] = [renumber(b, k) for b in item["items_behind"]]
                        item["url"] = f"https://review.example.org/{item['id'].split(',')[0]}"
                copies.append(twin)
        pipeline["change_queues"] = queues + copies
    return doc


def v3_shape(doc: dict[str, Any]) -> dict[str, Any]:
    """The v3-v9 document: item ``ref``/``project_canonical``, management event queue."""
    doc = copy.deepcopy(doc)
    doc.setdefault("management_event_queue", {"length": 0})
    doc["zuul_version"] = "3.19.1"
    for item in iter_items(doc):
        match = _ITEM_ID.match(item.get("id") or "")
        item["ref"] = _change_ref(match) if match else "refs/heads/master"
        item["project_canonical"] = f"review.example.org/{item.get('project', '')}"
    return doc


def _change_ref(match: re.Match[str]) -> str:
    number, ps = int(match.group(1)), int(match.group(2))
    return f"refs/changes/{number % 100:02d}/{number}/{ps}"


def _uuid(value: str) -> str:
    return uuid.uuid5(UUID_NS, value).hex


def v10_shape(doc: dict[str, Any]) -> dict[str, Any]:
    """A Zuul 10+ document derived from an older recording: UUID ids, changes in ``refs``."""
    src = v3_shape(doc)
    out: dict[str, Any] = {
        "zuul_version": "10.2.0",
        "last_reconfigured": src.get("last_reconfigured"),
        "message": src.get("message"),
        "trigger_event_queue": src.get("trigger_event_queue", {"length": 0}),
        "result_event_queue": src.get("result_event_queue", {"length": 0}),
        "management_event_queue": src.get("management_event_queue", {"length": 0}),
        "connection_event_queues": {"gerrit": {"length": 0}},
        "pipelines": [],
    }
    for pipeline in src.get("pipelines") or []:
        dependent = any(i.get("item_ahead") for i in _pipeline_items(pipeline))
        new_pipeline = {
            "name": pipeline.get("name"),
            "description": pipeline.get("description", ""),
            "state": "normal",
            "manager": "dependent" if dependent else "independent",
            "triggers": [{"driver": "gerrit"}],
            "trigger_events": 0,
            "result_events": 0,
            "management_events": 0,
            "change_queues": [],
        }
        for queue in pipeline.get("change_queues") or []:
            new_pipeline["change_queues"].append(
                {
                    "name": queue.get("name"),
                    "branch": "master",
                    "window": 20 if dependent else 0,
                    "heads": [[_v10_item(i) for i in head] for head in queue.get("heads") or []],
                }
            )
        out["pipelines"].append(new_pipeline)
    return out


def _pipeline_items(pipeline: dict[str, Any]) -> Any:
    for queue in pipeline.get("change_queues") or []:
        for head in queue.get("heads") or []:
            yield from head


def _v10_item(item: dict[str, Any]) -> dict[str, Any]:
    match = _ITEM_ID.match(item.get("id") or "")
    number = int(match.group(1)) if match else 0
    username, name = ACCOUNTS[number % len(ACCOUNTS)]
    ref: dict[str, Any] = {
        "id": item["id"] if match else None,
        "url": item.get("url"),
        "ref": item.get("ref"),
        "project": item.get("project"),
        "project_canonical": item.get("project_canonical"),
        "owner": {"name": name, "username": username} if match else None,
    }
    if not match:
        ref["newrev"] = item.get("id")
    return {
        "id": _uuid(item["id"]),
        "refs": [ref],
        "active": True,
        "live": True,
        "failing_reasons": item.get("failing_reasons", []),
        "zuul_ref": f"Z{_uuid(item['id'])[:31]}",
        "enqueue_time": item.get("enqueue_time"),
        "remaining_time": item.get("remaining_time"),
        "item_ahead": _uuid(item["item_ahead"]) if item.get("item_ahead") else None,
        "items_behind": [_uuid(b) for b in item.get("items_behind") or []],
        "jobs": [_v10_job(j, item.get("enqueue_time")) for j in item.get("jobs") or []],
    }


def _v10_job(job: dict[str, Any], enqueue_ms: int | None) -> dict[str, Any]:
    elapsed, remaining = job.get("elapsed_time"), job.get("remaining_time")
    estimated = (elapsed + remaining) / 1000.0 if elapsed is not None and remaining else None
    start = (enqueue_ms or 0) / 1000.0 if elapsed is not None else None
    return {
        "name": job.get("name"),
        "uuid": _uuid(f"{job.get('name')}-{job.get('url')}"),
        "url": job.get("url"),
        "result": job.get("result"),
        "voting": job.get("voting", True),
        "elapsed_time": elapsed,
        "remaining_time": remaining,
        "estimated_time": estimated,
        "start_time": start,
        "end_time": (start + elapsed / 1000.0) if start and elapsed and job.get("result") else None,
        "pre_fail": False,
        "tries": 1,
        "queued": elapsed is None,
        "waiting_status": None if elapsed is not None else "node request",
        "canceled": job.get("result") == "CANCELED",
        "paused": False,
        "retry": None,
    }


# ---------------------------------------------------------------------------- Gerrit data


def change_info(
    number: int, patchset: int, project: str, user: str, uploads: int = 0
) -> dict[str, Any]:
    """A ChangeInfo as Gerrit's REST documentation shapes it (DETAILED_ACCOUNTS,
    CURRENT_REVISION, STAR); ``uploads`` newer patchsets than Zuul's move ``updated`` on."""
    account = number % len(ACCOUNTS)
    username, name = ACCOUNTS[account]
    current = patchset + (1 if number % 7 == 0 else 0) + uploads  # some are outdated in Zuul
    sha = hashlib.sha1(f"{number}/{current}".encode()).hexdigest()
    change_id = "I" + hashlib.sha1(str(number).encode()).hexdigest()
    info: dict[str, Any] = {
        "id": f"{project.replace('/', '%2F')}~master~{change_id}",
        "project": project,
        "branch": "master",
        "change_id": change_id,
        "subject": f"{_VERBS[number % len(_VERBS)]} {_NOUNS[number % len(_NOUNS)]}",
        "status": "NEW",
        "created": "2013-09-20 10:00:00.000000000",
        "updated": f"2013-09-27 {10 + uploads:02d}:{number % 60:02d}:00.000000000",
        "_number": number,
        "owner": {
            "_account_id": 1000000 + account,
            "name": name,
            "email": f"{username}@example.org",
            "username": username,
        },
        "current_revision": sha,
        "revisions": {
            sha: {"_number": current, "ref": f"refs/changes/{number % 100:02d}/{number}/{current}"}
        },
    }
    if number % 4 == 0:
        info["topic"] = "bp/cells-v2"
    if user and number % 5 == 0:
        info["starred"] = True
    return info


class QueryError(ValueError):
    pass


def _tokens(query: str) -> list[str]:
    return re.findall(r"\(|\)|[^\s()]+", query)


def parse_query(query: str) -> Any:
    """A small subset of Gerrit's query language: terms, AND/OR/NOT/-, parentheses."""
    tokens = _tokens(query)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def expr_or() -> Any:
        left = expr_and()
        while peek() == "OR":
            take()
            left = ("or", left, expr_and())
        return left

    def expr_and() -> Any:
        left = expr_not()
        while peek() not in (None, ")", "OR"):
            if peek() == "AND":
                take()
            left = ("and", left, expr_not())
        return left

    def expr_not() -> Any:
        tok = peek()
        if tok == "NOT":
            take()
            return ("not", expr_not())
        if tok and tok.startswith("-") and len(tok) > 1:
            take()
            return ("not", ("term", tok[1:]))
        if tok == "(":
            take()
            inner = expr_or()
            if take() != ")":
                raise QueryError("missing ')'")
            return inner
        if tok is None or tok == ")":
            raise QueryError("unexpected end of query")
        return ("term", take())

    if not tokens:
        raise QueryError("empty query")
    tree = expr_or()
    if pos != len(tokens):
        raise QueryError(f"unexpected {tokens[pos]!r}")
    return tree


def evaluate(tree: Any, info: dict[str, Any], user: str) -> bool:
    kind = tree[0]
    if kind == "or":
        return evaluate(tree[1], info, user) or evaluate(tree[2], info, user)
    if kind == "and":
        return evaluate(tree[1], info, user) and evaluate(tree[2], info, user)
    if kind == "not":
        return not evaluate(tree[1], info, user)
    key, _, value = tree[1].partition(":")
    value = value.strip('"')
    if key == "status":
        return (value == "open" and info["status"] == "NEW") or value == info["status"].lower()
    if key == "is" and value == "open":
        return info["status"] == "NEW"
    if key in ("is", "has") and value in ("starred", "star"):
        if not user:
            raise QueryError("Must be signed in to use is:starred")
        return bool(info.get("starred"))
    if key == "is" and value == "watched":
        if not user:
            raise QueryError("Must be signed in to use is:watched")
        return info["project"] in WATCHED_PROJECTS
    if key == "owner":
        owner = info["owner"]
        if value == "self":
            return bool(user) and owner["username"] == user
        return value in (owner["username"], owner["email"], owner["name"])
    if key == "change":
        return value in (str(info["_number"]), info["change_id"])
    if key == "topic":
        return info.get("topic") == value
    if key == "project":
        return info["project"] == value
    if key == "branch":
        return info["branch"] == value
    raise QueryError(f"Unsupported operator {key}:{value}")


# ------------------------------------------------------------------------------ server


@dataclass
class ReplayState:
    fixtures: Path
    user: str = "danms"
    password: str = "secret"
    shift: bool = True
    document: str = "v2-status-tree.json"
    shape: str = "v3"
    factor: int = 1
    zuul_fault: str = ""
    gerrit_fault: str = ""
    fault_delay: float = 30.0
    counters: dict[str, int] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    last_modified: float = 0.0
    uploaded: dict[str, Any] | None = None
    uploads: dict[int, int] = field(default_factory=dict)  # change -> new patchsets
    zuul_raw: str | None = None  # served verbatim instead of the document (fuzzing)
    gerrit_raw: str | None = None

    def rebuild(self) -> None:
        if self.document == UPLOADED and self.uploaded is not None:
            base = copy.deepcopy(self.uploaded)
        else:
            path = self.fixtures / self.document
            if not path.is_file():
                raise FileNotFoundError(f"no recorded document {path}")
            base = json.loads(path.read_text())
        if self.shift:
            base = shift_times(base, int(time.time() * 1000))
        base = scale(base, self.factor)
        self.docs = {"v2": base, "v3": v3_shape(base), "v10": v10_shape(base)}
        self.changes = {}
        for item in iter_items(base):
            match = _ITEM_ID.match(item.get("id") or "")
            if match:
                number, ps = int(match.group(1)), int(match.group(2))
                self.changes[number] = {"ps": ps, "project": item.get("project", "")}
        # Strictly increasing whole seconds: HTTP dates have no finer resolution.
        self.last_modified = max(float(int(time.time())), self.last_modified + 1)

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def public(self) -> dict[str, Any]:
        return {
            "document": self.document,
            "shape": self.shape,
            "scale": self.factor,
            "zuul_fault": self.zuul_fault,
            "gerrit_fault": self.gerrit_fault,
            "counters": self.counters,
            "new_patchsets": {str(k): v for k, v in sorted(self.uploads.items())},
            "documents": sorted(p.name for p in self.fixtures.glob("*.json")),
            "changes": len(self.changes),
        }


STATE = web.AppKey("state", ReplayState)


async def _zuul_fault(request: web.Request, body: bytes) -> web.StreamResponse | None:
    state = request.app[STATE]
    if state.zuul_fault == "500":
        return web.Response(status=500, text="Internal Server Error")
    if state.zuul_fault == "timeout":
        await asyncio.sleep(state.fault_delay)
        return web.Response(status=504, text="too late")
    if state.zuul_fault == "truncated":
        return web.Response(body=body[: len(body) // 2], content_type="application/json")
    return None


async def _serve_status(request: web.Request, shape: str) -> web.StreamResponse:
    state = request.app[STATE]
    state.count("zuul")
    if state.zuul_raw is not None:
        return web.Response(body=state.zuul_raw.encode(), content_type="application/json")
    body = json.dumps(state.docs[shape]).encode()
    fault = await _zuul_fault(request, body)
    if fault is not None:
        return fault
    since = request.headers.get("If-Modified-Since")
    if since:
        try:
            if parsedate_to_datetime(since).timestamp() >= state.last_modified:
                state.count("zuul_not_modified")
                return web.Response(status=304)
        except (TypeError, ValueError):
            pass
    headers = {"Last-Modified": formatdate(state.last_modified, usegmt=True)}
    if shape == "v10":
        headers["Cache-Control"] = "public, max-age=1"
    return web.Response(body=body, content_type="application/json", headers=headers)


async def status_json(request: web.Request) -> web.StreamResponse:
    return await _serve_status(request, "v2")


async def tenant_status(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    return await _serve_status(request, "v10" if state.shape == "v10" else "v3")


async def tenant_change_status(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    wanted = request.match_info["change"]
    doc = state.docs["v10" if state.shape == "v10" else "v3"]
    found = [
        item
        for item in iter_items(doc)
        if item.get("id") == wanted or any(r.get("id") == wanted for r in item.get("refs") or [])
    ]
    return web.json_response(found)


def _check_auth(request: web.Request) -> str | None:
    """The authenticated user under /a/, or None when the credentials are wrong."""
    state = request.app[STATE]
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic ") or state.gerrit_fault == "401":
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user if (user, password) == (state.user, state.password) else None


async def changes(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.count("gerrit")
    user = ""
    if request.path.startswith("/a/"):
        found = _check_auth(request)
        if found is None:
            return web.Response(
                status=401,
                text="Unauthorized",
                headers={"WWW-Authenticate": 'Basic realm="Gerrit"'},
            )
        user = found
    if state.gerrit_fault == "500":
        return web.Response(status=500, text="Internal server error")
    if state.gerrit_fault == "timeout":
        await asyncio.sleep(state.fault_delay)
    if state.gerrit_raw is not None:
        return web.Response(text=state.gerrit_raw, content_type="application/json")
    queries = request.query.getall("q", [])
    if not queries:
        return web.Response(status=400, text="missing query field")
    options = set(request.query.getall("o", []))
    limit = int(request.query.get("n", "0") or 0)
    answers = []
    for query in queries:
        try:
            tree = parse_query(query)
            matched = []
            for number in sorted(state.changes, reverse=True):
                data = state.changes[number]
                info = change_info(
                    number, data["ps"], data["project"], user, state.uploads.get(number, 0)
                )
                if evaluate(tree, info, user):
                    matched.append(_shape_info(info, options))
        except QueryError as exc:
            return web.Response(status=400, text=str(exc))
        if limit and len(matched) > limit:
            matched = matched[:limit]
            matched[-1]["_more_changes"] = True
        answers.append(matched)
    payload = answers if len(queries) > 1 else answers[0]
    text = json.dumps(payload)
    if state.gerrit_fault != "noguard":
        text = GUARD + text
    return web.Response(text=text, content_type="application/json")


def _shape_info(info: dict[str, Any], options: set[str]) -> dict[str, Any]:
    out = dict(info)
    if "CURRENT_REVISION" not in options and "ALL_REVISIONS" not in options:
        out.pop("current_revision", None)
        out.pop("revisions", None)
    if "DETAILED_ACCOUNTS" not in options:
        out["owner"] = {"_account_id": info["owner"]["_account_id"]}
    if "STAR" not in options:
        out.pop("starred", None)
    return out


async def control_get(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[STATE].public())


async def control_post(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        return web.Response(status=400, text="body must be JSON")
    rebuild = False
    for key, attr in (("document", "document"), ("shape", "shape"), ("scale", "factor")):
        if key in body and getattr(state, attr) != body[key]:
            setattr(state, attr, int(body[key]) if key == "scale" else str(body[key]))
            rebuild = True
    for key in ("zuul_fault", "gerrit_fault"):
        if key in body:
            setattr(state, key, str(body[key] or ""))
    for key in ("zuul_raw", "gerrit_raw"):
        if key in body:
            setattr(state, key, None if body[key] is None else str(body[key]))
    if isinstance(body.get("upload"), dict):
        state.document, state.uploaded, rebuild = UPLOADED, body["upload"], True
    elif state.document != UPLOADED:
        state.uploaded = None
    for number in body.get("new_patchset") or []:
        state.uploads[int(number)] = state.uploads.get(int(number), 0) + 1
    if "fault_delay" in body:
        state.fault_delay = float(body["fault_delay"])
    if body.get("touch"):
        rebuild = True
    if rebuild:
        try:
            state.rebuild()
        except FileNotFoundError as exc:
            return web.Response(status=404, text=str(exc))
    return web.json_response(state.public())


def make_app(state: ReplayState) -> web.Application:
    state.rebuild()
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/api/tenant/{tenant}/status", tenant_status)
    app.router.add_get("/api/tenant/{tenant}/status/change/{change}", tenant_change_status)
    app.router.add_get("/changes/", changes)
    app.router.add_get("/a/changes/", changes)
    app.router.add_get("/_control", control_get)
    app.router.add_post("/_control", control_post)
    return app


async def control(url: str, **changes: Any) -> dict[str, Any]:
    """Switch a replay server's document, shape or faults (POST /_control); its state."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/_control", json=changes) as resp,
    ):
        if resp.status != 200:
            raise RuntimeError(f"replay control failed: HTTP {resp.status} {await resp.text()}")
        data: dict[str, Any] = await resp.json()
        return data


def control_sync(url: str, **changes: Any) -> dict[str, Any]:
    """:func:`control` for code without an event loop (tmux tests, the demo)."""
    request = urllib.request.Request(
        f"{url}/_control",
        data=json.dumps(changes).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def wait_until_up(url: str, within: float = 20.0) -> None:
    """Return once a replay server (started as a process) answers at ``url``."""

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"{url}/_control", timeout=2).close()
        except OSError:
            return False
        return True

    wait_for(f"the replay server at {url}", answers, timeout=within, every=0.1)


class ReplayServer:
    """The replay server inside the current event loop (tests): ``await start()``."""

    def __init__(self, state: ReplayState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> ReplayServer:
        self._runner = web.AppRunner(make_app(self.state), shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hearth_ci_lab.replay", description=__doc__)
    parser.add_argument("--fixtures", type=Path, default=default_fixtures())
    parser.add_argument("--listen", default="127.0.0.1:8081", help="HOST:PORT")
    parser.add_argument("--document", default="v2-status-tree.json")
    parser.add_argument("--shape", default="v3", choices=["v3", "v10"])
    parser.add_argument("--user", default="danms", help="Gerrit user for /a/ (basic auth)")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--no-shift", action="store_true", help="keep recorded timestamps")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    state = ReplayState(
        fixtures=args.fixtures,
        user=args.user,
        password=args.password,
        shift=not args.no_shift,
        document=args.document,
        shape=args.shape,
    )
    app = make_app(state)
    print(f"replaying {args.fixtures / args.document} on http://{args.listen}", flush=True)
    web.run_app(app, host=host.strip("[]") or "127.0.0.1", port=int(port), print=None)


if __name__ == "__main__":
    main()
