"""One log format for every service.

``2026-11-23T12:00:00.123Z INFO  wake: Waking theobromine host=theobromine methods=udp9,0x0842``

Key/values go in ``extra={"kv": {...}}`` or through :func:`kv`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from hearth_runtime.text import neutral

# A value from a request or an upstream cannot make a log line longer than this.
VALUE_LIMIT = 512
MESSAGE_LIMIT = 2048

_SERVICE = "hearth"


def kv(**values: Any) -> dict[str, dict[str, Any]]:
    """``log.info("msg", extra=kv(host="x"))`` attaches key=value pairs to a line."""
    return {"kv": values}


def _format_value(value: Any) -> str:
    text = neutral(value, VALUE_LIMIT)
    if not text or any(c.isspace() for c in text) or '"' in text:
        return '"' + text.replace('"', '\\"') + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """timestamp (UTC, ms), level, service, message, then key=value pairs."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (
            f"{stamp}.{int(record.msecs):03d}Z {record.levelname:<5} {self.service}: "
            f"{neutral(record.getMessage(), MESSAGE_LIMIT)}"
        )
        pairs = getattr(record, "kv", None)
        if pairs:
            line += " " + " ".join(f"{neutral(k, 64)}={_format_value(v)}" for k, v in pairs.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route every logger to stdout in the shared format (idempotent)."""
    global _SERVICE
    _SERVICE = service
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_hearth", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler._hearth = True  # type: ignore[attr-defined]
    handler.setFormatter(KeyValueFormatter(service))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter stays at WARNING unless asked for.
    for noisy in ("scapy.runtime", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
