"""The Wake-on-LAN magic packet: 6 x 0xFF, the MAC 16 times, optional SecureOn password."""

from __future__ import annotations

SYNC = b"\xff" * 6
ETHERTYPE_WOL = 0x0842


def magic_payload(mac: bytes, password: bytes = b"") -> bytes:
    if len(mac) != 6 or len(password) not in (0, 4, 6):
        raise ValueError("MAC must be 6 bytes, password 0, 4 or 6 bytes")
    return SYNC + mac * 16 + password


def find_magic(data: bytes, mac: bytes) -> bytes | None:
    """The bytes following a magic sequence for ``mac`` in ``data`` (its password, maybe
    empty), or None when ``data`` holds no magic packet for ``mac``."""
    body = SYNC + mac * 16
    at = data.find(body)
    if at < 0:
        return None
    return data[at + len(body) : at + len(body) + 6]


def password_ok(trailer: bytes, password: bytes) -> bool:
    """A magic packet's trailer against the expected SecureOn password (empty = none)."""
    return not password or trailer[: len(password)] == password
