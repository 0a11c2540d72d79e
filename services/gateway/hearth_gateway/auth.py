"""Bearer tokens, roles and per-caller rate limits.

Reading needs the viewer role (or nothing, with ``anonymous_read``); changing state needs
operator. A missing or unknown token is UNAUTHENTICATED, a known token without the role is
PERMISSION_DENIED. Tokens are compared as SHA-256 digests with ``hmac.compare_digest``
against every configured token, so timing says nothing about which one nearly matched.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from dataclasses import dataclass, field

from hearth_gateway.catalog import Method
from hearth_gateway.config import GatewayConfig, TokenConfig, parse_rate
from hearth_runtime import PermissionDenied, ResourceExhausted, Unauthenticated

ROLES = {"anonymous": 0, "viewer": 1, "operator": 2}


@dataclass(frozen=True)
class Principal:
    name: str
    role: str  # anonymous, viewer, operator

    def may(self, role: str) -> bool:
        return ROLES[self.role] >= ROLES[role]


ANONYMOUS = Principal("anonymous", "anonymous")


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
    def __init__(self, config: GatewayConfig) -> None:
        self.tokens: list[TokenConfig] = list(config.tokens)
        self._digests = [bytes.fromhex(t.sha256) for t in self.tokens]
        self.anonymous_read = config.anonymous_read
        self.rates = {name: parse_rate(rate) for name, rate in config.rate_limits.items()}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

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
        need = "operator" if method.mutating else "viewer"
        if principal is ANONYMOUS:
            if need == "viewer" and self.anonymous_read:
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
        rate = self.rates.get(method.full_name)
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
