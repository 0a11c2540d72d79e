"""HTTP clients for Zuul's status API and Gerrit's REST API, each with its own health.

Failures are kept per source (Zuul and Gerrit errors are reported separately); the last good
data stays and is marked stale; the next attempt waits with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from hearth_ci import metrics
from hearth_ci.upstream import TEXT_LIMIT, Reader, Refused, load_json
from hearth_ci.zuul import ZuulFormatError, ZuulStatus, parse_status
from hearth_runtime.logs import kv
from hearth_runtime.text import neutral

GERRIT_GUARD = ")]}'"
GERRIT_OPTIONS = ("DETAILED_ACCOUNTS", "CURRENT_REVISION", "STAR")
MAX_CACHED_CHANGES = 10_000
log = logging.getLogger("hearth.ci")


class SourceError(Exception):
    """A source could not be read; the message says why, for people."""


@dataclass
class SourceHealth:
    """What a source's last attempts did; drives stale marking, backoff and metrics."""

    name: str
    ok: bool = False
    error: str = ""
    warning: str = ""
    """Set when the last accepted answer had malformed parts that were skipped."""
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

    def succeeded(self, warning: str = "") -> None:
        self.ok, self.error, self.failed_attempts = True, "", 0
        self.warning = warning
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

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        timeout: float = 10.0,
        max_bytes: int = 32 << 20,
    ) -> None:
        self.session = session
        self.url = url
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.health = SourceHealth("zuul")
        self.status: ZuulStatus | None = None
        self.raw: Any = None
        self.last_modified = ""
        self.requests = 0
        self.not_modified = 0

    async def fetch(self) -> bool:
        """One poll; True when new data arrived. Errors are recorded, never raised: any
        answer at all (any bytes, any JSON) ends as new data or as an error in health."""
        try:
            return await self._fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a parser bug must not end the poller either
            log.exception("Zuul answer could not be read", extra=kv(url=redact_url(self.url)))
            metrics.UPSTREAM_REJECTED.labels("zuul", "internal").inc()
            self.health.failed(f"Zuul answer could not be read: {type(exc).__name__}")
            return False

    async def _fetch(self) -> bool:
        headers = {"Accept": "application/json"}
        if self.last_modified and self.status is not None:
            headers["If-Modified-Since"] = self.last_modified
        self.requests += 1
        reader = Reader("zuul")
        try:
            async with self.session.get(
                self.url, headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                if resp.status == 304:
                    self.not_modified += 1
                    self.health.succeeded(self.health.warning)
                    return False
                if resp.status != 200:
                    raise SourceError(
                        f"Zuul answered HTTP {resp.status} {neutral(resp.reason or '', 80)}"
                    )
                body = await read_limited(resp, self.max_bytes, "zuul")
                last_modified = neutral(resp.headers.get("Last-Modified", ""), 64)
            try:
                raw = load_json(body, "zuul")
                status = parse_status(raw, reader)
            except Refused as exc:
                raise SourceError(f"Zuul sent {exc}") from None
            except ZuulFormatError as exc:
                metrics.UPSTREAM_REJECTED.labels("zuul", "shape").inc()
                raise SourceError(f"Zuul: {exc}") from None
        except SourceError as exc:
            self.health.failed(str(exc))
            return False
        except TimeoutError:
            self.health.failed(f"Zuul did not answer within {self.timeout:g} s")
            return False
        except aiohttp.ClientError as exc:
            self.health.failed(f"Zuul unreachable: {redact_text(str(exc) or type(exc).__name__)}")
            return False
        self.raw, self.status, self.last_modified = raw, status, last_modified
        self.health.succeeded(reader.finish())
        return True


async def read_limited(resp: aiohttp.ClientResponse, limit: int, source: str) -> bytes:
    """The body, refused (SourceError, counted) when it is larger than ``limit`` bytes: the
    declared length is checked first, the bytes read never exceed the limit (+1 chunk)."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        metrics.UPSTREAM_REJECTED.labels(source, "too_large").inc()
        raise SourceError(f"{source.capitalize()} answer too large ({declared} bytes > {limit})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            metrics.UPSTREAM_REJECTED.labels(source, "too_large").inc()
            raise SourceError(f"{source.capitalize()} answer too large (over {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


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


def strip_guard(body: bytes | str) -> Any:
    """Gerrit's JSON after its XSSI guard; an answer without the guard is not Gerrit's.
    Refused JSON (NaN, too deep, ...) raises SourceError too."""
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    if not text.startswith(GERRIT_GUARD):
        metrics.UPSTREAM_REJECTED.labels("gerrit", "no_guard").inc()
        raise SourceError(
            "Gerrit answer lacks the )]}' guard: not a Gerrit REST answer "
            f"(starts with {neutral(repr(text[:20]), 60)})"
        )
    try:
        return load_json(text[len(GERRIT_GUARD) :], "gerrit")
    except Refused as exc:
        raise SourceError(f"Gerrit sent {exc}") from None


def change_number(raw: Any) -> int | None:
    """A ChangeInfo's ``_number`` when it is a plausible one (1 .. 2^31-1), else None."""
    if not isinstance(raw, dict):
        return None
    number = raw.get("_number")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 2**31:
        return None
    return number


def parse_change(raw: dict[str, Any], reader: Reader | None = None) -> Change:
    """A Change from a ChangeInfo whose ``_number`` is valid (see change_number); every
    other field is type-checked, bounded and neutral."""
    r = reader or Reader("gerrit")
    number = change_number(raw)
    if number is None:
        raise ValueError("not a ChangeInfo with a valid _number")
    owner = r.obj(raw.get("owner"), "field_type") or {}
    current = raw.get("current_revision")
    revisions = r.obj(raw.get("revisions"), "field_type") or {}
    revision = (revisions.get(current) if isinstance(current, str) else None) or {}
    if not isinstance(revision, dict):
        r.skip("field_type")
        revision = {}
    patchset = revision.get("_number")
    if isinstance(patchset, bool) or not isinstance(patchset, int) or not 0 < patchset < 2**31:
        patchset = 0
    return Change(
        number=number,
        project=r.text(raw.get("project")),
        branch=r.text(raw.get("branch")),
        topic=r.text(raw.get("topic")),
        subject=r.text(raw.get("subject"), TEXT_LIMIT),
        status=r.text(raw.get("status"), 32),
        updated=r.text(raw.get("updated"), 64),
        owner_name=r.text(owner.get("name") or owner.get("username")),
        owner_username=r.text(owner.get("username")),
        owner_email=r.text(owner.get("email")),
        current_patchset=patchset,
        starred=r.flag(raw.get("starred"), False),
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
        max_bytes: int = 32 << 20,
    ) -> None:
        self.session = session
        self.max_bytes = max_bytes
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
        """Changes per query, in order; raises SourceError (also recorded in health).
        Any answer at all ends as changes or as a SourceError, never another exception."""
        async with self._lock:
            reader = Reader("gerrit")
            try:
                result = await self._query(queries, reader)
            except SourceError as exc:
                self.health.failed(str(exc))
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a parser bug must not end a watch
                log.exception("Gerrit answer could not be read")
                metrics.UPSTREAM_REJECTED.labels("gerrit", "internal").inc()
                message = f"Gerrit answer could not be read: {type(exc).__name__}"
                self.health.failed(message)
                raise SourceError(message) from None
            self.health.succeeded(reader.finish())
            return result

    async def _query(self, queries: list[str], reader: Reader) -> list[list[Change]]:
        self.requests += 1
        try:
            async with self.session.get(
                self.url(queries),
                headers={"Accept": "application/json"}
                | ({"Authorization": self.auth} if self.auth else {}),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                body = await read_limited(resp, self.max_bytes, "gerrit")
                if resp.status == 401:
                    raise SourceError("Gerrit refused the credentials (HTTP 401): check -u/-P")
                if resp.status != 200:
                    text = body.decode("utf-8", "replace").strip()
                    detail = neutral(text.splitlines()[0], 200) if text else ""
                    raise SourceError(f"Gerrit answered HTTP {resp.status}: {detail}")
        except TimeoutError:
            raise SourceError(f"Gerrit did not answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            detail = redact_text(str(exc) or type(exc).__name__)
            raise SourceError(f"Gerrit unreachable: {detail}") from None
        data = strip_guard(body)
        self.raw = data
        changes = parse_changes(data, len(queries), reader, self.cache)
        self.cache_hits += changes.hits
        self.cache_misses += changes.misses
        return changes.lists


@dataclass
class ParsedChanges:
    lists: list[list[Change]]
    hits: int = 0
    misses: int = 0


def parse_changes(
    data: Any, queries: int, reader: Reader, cache: dict[int, Change] | None = None
) -> ParsedChanges:
    """The changes per query of a ``/changes/`` answer (any JSON): one query answers a
    list of ChangeInfo, several a list of such lists; another shape is SourceError.
    Entries that are not ChangeInfo with a valid ``_number`` are skipped (counted).
    ``cache`` (number -> Change, bounded) skips re-parsing changes whose ``updated`` and
    ``starred`` did not move."""
    lists = data if queries > 1 else [data]
    if (
        not isinstance(lists, list)
        or len(lists) != queries
        or not all(isinstance(answer, list) for answer in lists)
    ):
        metrics.UPSTREAM_REJECTED.labels("gerrit", "shape").inc()
        raise SourceError("Gerrit answered with an unexpected shape")
    out = ParsedChanges([])
    for answer in lists:
        changes = []
        for raw in answer:
            number = change_number(raw)
            if number is None:
                reader.skip("change")
                continue
            hit = cache.get(number) if cache is not None else None
            if (
                hit is not None
                and hit.updated == raw.get("updated")
                and hit.starred == (raw.get("starred") is True)
            ):
                out.hits += 1
                changes.append(hit)
                continue
            out.misses += 1
            change = parse_change(raw, reader)
            if cache is not None:
                if len(cache) >= MAX_CACHED_CHANGES and number not in cache:
                    cache.pop(next(iter(cache)))  # oldest first: memory stays bounded
                cache[number] = change
            changes.append(change)
        out.lists.append(changes)
    return out


_USERINFO = re.compile(r"(?i)\b(https?://)[^/@\s]*@")


def redact_url(url: str) -> str:
    """``url`` with any user:password part shown as ``***`` (never give it to readers)."""
    return _USERINFO.sub(r"\1***@", url)


def redact_text(text: str) -> str:
    """``text`` (an error message, say) with URL credentials redacted, and neutral."""
    return neutral(redact_url(text), 300)
