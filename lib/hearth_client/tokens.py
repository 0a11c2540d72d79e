"""Bearer tokens for the gateway: a new random token and the SHA-256 digest (hex) that the
gateway's ``tokens`` setting holds instead of the token itself."""

from __future__ import annotations

import hashlib
import secrets


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "hth_" + secrets.token_urlsafe(32)
