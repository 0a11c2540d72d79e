"""Bearer tokens, roles and per-caller rate limits: the Python front door's checks.

What each method needs (a role, a rate) is its ``hearth.auth.v1.policy`` option, read from
the descriptors (``hearth_gateway.policy``); hearth-edge applies the same rules, handed to it
in its EdgeConfig, and tests/test_gateway_auth_table.py holds both doors to the same answer
for every method and role. A viewer method may be called without a token with
``anonymous_read``. A missing or unknown token is UNAUTHENTICATED, a known token without the
role is PERMISSION_DENIED. Tokens are compared as SHA-256 digests with ``hmac.compare_digest``
against every configured token, so timing says nothing about which one nearly matched.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass, field

from hearth_gateway.catalog import Catalog, Method
from hearth_gateway.config import GatewayConfig, TokenConfig
from hearth_gateway.policy import ANONYMOUS as ANONYMOUS_ROLE
from hearth_gateway.policy import RANK, VIEWER, Rate, rate_overrides
from hearth_runtime import ConfigError, PermissionDenied, ResourceExhausted, Unauthenticated


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "hth_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    name: str
    role: str  # anonymous, viewer, operator

    def may(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]


ANONYMOUS = Principal(ANONYMOUS_ROLE, ANONYMOUS_ROLE)


# The one grammar of an Authorization value, the same in hearth-edge (edge/src/auth.rs) and
# pinned by tests/test_gateway_auth_table.py: optional spaces/tabs around, the scheme
# "Bearer" in any case (RFC 7235: schemes are case-insensitive), one or more spaces, then a
# token68 (RFC 6750: letters, digits, - . _ ~ + /, trailing =) of at most MAX_TOKEN_CHARS.
# Anything else that is present is malformed: refused as a wrong token (INVALID_TOKEN).
MAX_TOKEN_CHARS = 1024
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_OWS = " \t"


def bearer(value: str | bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value.

    None when there is none (absent, or only spaces: anonymous), "" when the value is
    malformed (a wrong scheme, no token, a space inside it, non-ASCII, too long)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return ""
    value = value.strip(_OWS)
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    token = token.lstrip(" ")
    if scheme.lower() != "bearer" or not scheme.isascii():
        return ""
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN68.fullmatch(token):
        return ""
    return token


def normalized_authorization(value: str | bytes | None) -> str | None:
    """``value`` as a hop to the other front door sends it: parsed by ``bearer`` and written
    again, so a value gRPC metadata cannot carry (a tab, non-ASCII) arrives as what it is,
    a malformed credential ("Bearer" without a token)."""
    token = bearer(value)
    if token is None:
        return None
    return f"Bearer {token}" if token else "Bearer"


@dataclass
class TokenBucket:
    capacity: int
    per_seconds: float
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self, now: float) -> float:
        """0 if a call may go now, else the seconds until one may (inf: never, 0/min)."""
        if self.capacity <= 0:
            return math.inf
        rate = self.capacity / self.per_seconds
        if self.tokens < 0:
            self.tokens = float(self.capacity)
        self.tokens = min(float(self.capacity), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


class Authorizer:
    def __init__(self, config: GatewayConfig, catalog: Catalog) -> None:
        self.tokens: list[TokenConfig] = list(config.tokens)
        self._digests = [bytes.fromhex(t.sha256) for t in self.tokens]
        self.anonymous_read = config.anonymous_read
        known = {m.full_name for m in catalog.methods.values()}
        try:
            self._overrides = rate_overrides(config.rate_limits, known)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def rate(self, method: Method) -> Rate | None:
        """The calls per caller ``method`` allows: its policy's, unless rate_limits overrides."""
        return self._overrides.get(method.full_name, method.policy.rate)

    def identify(self, token: str | None) -> Principal:
        """Who holds ``token``; ANONYMOUS for no token; Unauthenticated for a wrong one."""
        if token is None:
            return ANONYMOUS
        digest = hashlib.sha256(token.encode()).digest()
        found: TokenConfig | None = None
        for known, config in zip(self._digests, self.tokens, strict=True):
            if hmac.compare_digest(digest, known) and found is None:
                found = config
        if found is None:
            raise Unauthenticated("invalid bearer token", reason="INVALID_TOKEN")
        return Principal(found.name, found.role)

    def authorize(self, method: Method, token: str | None) -> Principal:
        """The caller if it may call ``method``, else Unauthenticated / PermissionDenied."""
        principal = self.identify(token)
        need = method.policy.role
        if principal is ANONYMOUS:
            if need == VIEWER and self.anonymous_read:
                return principal
            raise Unauthenticated(
                f"{method.full_name} needs a bearer token with role {need}",
                reason="TOKEN_REQUIRED",
                metadata={"required_role": need},
            )
        if not principal.may(need):
            raise PermissionDenied(
                f"{principal.name} ({principal.role}) may not call {method.full_name}: "
                f"needs role {need}",
                reason="ROLE_REQUIRED",
                metadata={"required_role": need, "role": principal.role},
            )
        self._limit(method, principal)
        return principal

    def _limit(self, method: Method, principal: Principal) -> None:
        rate = self.rate(method)
        if rate is None:
            return
        key = (method.full_name, principal.name)
        bucket = self._buckets.setdefault(key, TokenBucket(*rate))
        wait = bucket.take(time.monotonic())
        if wait == math.inf:
            raise ResourceExhausted(
                f"{method.name} is switched off: its rate limit is 0 per {rate[1]:g} s",
                reason="RATE_LIMITED",
            )
        if wait > 0:
            raise ResourceExhausted(
                f"too many {method.name} calls by {principal.name}: limit "
                f"{rate[0]} per {rate[1]:g} s, retry in {wait:.1f} s",
                reason="RATE_LIMITED",
                metadata={"retry_after_seconds": f"{wait:.1f}"},
            )
