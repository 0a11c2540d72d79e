"""HTTP clients for Zuul's status API and Gerrit's REST API, each with its own health.

Failures are kept per source (Zuul and Gerrit errors are reported separately); the last good
data stays and is marked stale; the next attempt waits with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from hearth_ci.zuul import ZuulFormatError, ZuulStatus, parse_status

GERRIT_GUARD = ")]}'"
GERRIT_OPTIONS = ("DETAILED_ACCOUNTS", "CURRENT_REVISION", "STAR")


class SourceError(Exception):
    """A source could not be read; the message says why, for people."""


@dataclass
class SourceHealth:
    """What a source's last attempts did; drives stale marking, backoff and metrics."""

    name: str
    ok: bool = False
    error: str = ""
    failed_attempts: int = 0
    last_success: float | None = None  # wall clock
    last_attempt: float | None = None
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    _rng: random.Random = field(default_factory=random.Random)

    @property
    def stale(self) -> bool:
        return self.failed_attempts > 0 and self.last_success is not None

    def data_age(self, now: float | None = None) -> float | None:
        if self.last_success is None:
            return None
        return max(0.0, (now or time.time()) - self.last_success)

    def succeeded(self) -> None:
        self.ok, self.error, self.failed_attempts = True, "", 0
        self.last_success = self.last_attempt = time.time()

    def failed(self, error: str) -> None:
        self.ok, self.error = False, error
        self.failed_attempts += 1
        self.last_attempt = time.time()

    def retry_delay(self, interval: float) -> float:
        """The normal interval when fine; after n failures min(max, base * 2^(n-1)), +-25 %
        jitter so that many pollers do not retry in step."""
        if self.failed_attempts == 0:
            return interval
        delay = min(self.backoff_max, self.backoff_base * 2 ** (self.failed_attempts - 1))
        return float(delay * self._rng.uniform(0.75, 1.25))


def zuul_status_url(base: str, tenant: str) -> str:
    """``/api/tenant/{t}/status`` on Zuul 3+, ``/status.json`` on Zuul 2 (no tenant)."""
    base = base.rstrip("/")
    if base.endswith((".json", "/status")):
        return base
    return f"{base}/api/tenant/{quote(tenant, safe='')}/status" if tenant else f"{base}/status.json"


class ZuulClient:
    """Polls one Zuul status URL with conditional requests (If-Modified-Since)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float = 10.0) -> None:
        self.session = session
        self.url = url
        self.timeout = timeout
        self.health = SourceHealth("zuul")
        self.status: ZuulStatus | None = None
        self.raw: Any = None
        self.last_modified = ""
        self.requests = 0
        self.not_modified = 0

    async def fetch(self) -> bool:
        """One poll; True when new data arrived. Errors are recorded, never raised."""
        headers = {"Accept": "application/json"}
        if self.last_modified and self.status is not None:
            headers["If-Modified-Since"] = self.last_modified
        self.requests += 1
        try:
            async with self.session.get(
                self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                if resp.status == 304:
                    self.not_modified += 1
                    self.health.succeeded()
                    return False
                if resp.status != 200:
                    raise SourceError(f"Zuul answered HTTP {resp.status} {resp.reason or ''}")
                body = await resp.read()
                last_modified = resp.headers.get("Last-Modified", "")
            try:
                raw = json.loads(body)
            except ValueError as exc:
                raise SourceError(
                    f"Zuul sent invalid JSON ({len(body)} bytes, truncated?): {exc}"
                ) from None
            try:
                status = parse_status(raw)
            except ZuulFormatError as exc:
                raise SourceError(f"Zuul: {exc}") from None
        except SourceError as exc:
            self.health.failed(str(exc))
            return False
        except TimeoutError:
            self.health.failed(f"Zuul did not answer within {self.timeout:g} s")
            return False
        except aiohttp.ClientError as exc:
            self.health.failed(f"Zuul unreachable: {exc or type(exc).__name__}")
            return False
        self.raw, self.status, self.last_modified = raw, status, last_modified
        self.health.succeeded()
        return True


@dataclass(slots=True)
class Change:
    """What the dashboard needs of a Gerrit ChangeInfo."""

    number: int
    project: str
    branch: str
    topic: str
    subject: str
    status: str
    updated: str
    owner_name: str
    owner_username: str
    owner_email: str
    current_patchset: int
    starred: bool


def strip_guard(text: str) -> Any:
    """Gerrit's JSON after its XSSI guard; an answer without the guard is not Gerrit's."""
    if not text.startswith(GERRIT_GUARD):
        raise SourceError(
            "Gerrit answer lacks the )]}' guard: not a Gerrit REST answer "
            f"(starts with {text[:20]!r})"
        )
    try:
        return json.loads(text[len(GERRIT_GUARD) :])
    except ValueError as exc:
        raise SourceError(f"Gerrit sent invalid JSON: {exc}") from None


def parse_change(raw: dict[str, Any]) -> Change:
    owner = raw.get("owner") or {}
    current = raw.get("current_revision") or ""
    revision = (raw.get("revisions") or {}).get(current) or {}
    return Change(
        number=int(raw["_number"]),
        project=str(raw.get("project") or ""),
        branch=str(raw.get("branch") or ""),
        topic=str(raw.get("topic") or ""),
        subject=str(raw.get("subject") or ""),
        status=str(raw.get("status") or ""),
        updated=str(raw.get("updated") or ""),
        owner_name=str(owner.get("name") or owner.get("username") or ""),
        owner_username=str(owner.get("username") or ""),
        owner_email=str(owner.get("email") or ""),
        current_patchset=int(revision.get("_number") or 0),
        starred=bool(raw.get("starred", False)),
    )


class GerritClient:
    """Runs every filter group as one ``q=`` of ONE ``/changes/`` request.

    Parsed changes are cached by number and ``updated``, so a refresh re-parses only the
    changes that moved.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        user: str = "",
        password: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.auth = ""
        if user and password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.auth = f"Basic {token}"
        self.timeout = timeout
        self.health = SourceHealth("gerrit")
        self.cache: dict[int, Change] = {}
        self.cache_hits = self.cache_misses = 0
        self.requests = 0
        self.raw: Any = None
        self._lock = asyncio.Lock()

    def url(self, queries: list[str]) -> str:
        prefix = "/a" if self.auth else ""
        params = "&".join(
            [f"q={quote(q, safe=':')}" for q in queries] + [f"o={o}" for o in GERRIT_OPTIONS]
        )
        return f"{self.base_url}{prefix}/changes/?{params}"

    async def query(self, queries: list[str]) -> list[list[Change]]:
        """Changes per query, in order; raises SourceError (also recorded in health)."""
        async with self._lock:
            try:
                result = await self._query(queries)
            except SourceError as exc:
                self.health.failed(str(exc))
                raise
            self.health.succeeded()
            return result

    async def _query(self, queries: list[str]) -> list[list[Change]]:
        self.requests += 1
        try:
            async with self.session.get(
                self.url(queries),
                headers={"Accept": "application/json"}
                | ({"Authorization": self.auth} if self.auth else {}),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                text = await resp.text()
                if resp.status == 401:
                    raise SourceError("Gerrit refused the credentials (HTTP 401): check -u/-P")
                if resp.status != 200:
                    detail = text.strip().splitlines()[0][:200] if text.strip() else ""
                    raise SourceError(f"Gerrit answered HTTP {resp.status}: {detail}")
        except TimeoutError:
            raise SourceError(f"Gerrit did not answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise SourceError(f"Gerrit unreachable: {exc or type(exc).__name__}") from None
        data = strip_guard(text)
        self.raw = data
        lists = data if len(queries) > 1 else [data]
        if not isinstance(lists, list) or len(lists) != len(queries):
            raise SourceError("Gerrit answered with an unexpected shape")
        return [[self._cached(raw) for raw in answer if "_number" in raw] for answer in lists]

    def _cached(self, raw: dict[str, Any]) -> Change:
        number = int(raw["_number"])
        hit = self.cache.get(number)
        same = hit is not None and hit.updated == raw.get("updated")
        if hit is not None and same and hit.starred == bool(raw.get("starred", False)):
            self.cache_hits += 1
            return hit
        self.cache_misses += 1
        change = parse_change(raw)
        self.cache[number] = change
        return change
