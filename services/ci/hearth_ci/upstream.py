"""Total reading of what Zuul and Gerrit send: any bytes in, typed values or a refusal out.

Nothing an upstream sends may end a poller. A document is *refused* as a whole (the last
good data stays) when it cannot be trusted at all: too large, not JSON, NaN/Infinity or
absurd number literals, nested too deep, too many nodes, or the wrong shape at the top.
Inside an accepted document every value is type-checked where it is read: a part of the
wrong type is *skipped* (counted per reason), numbers are clamped to sane ranges, strings
are bounded and made neutral (no control characters or escape sequences reach an API
field, a log line or a terminal), URLs that are not plain http(s) are dropped.

Both outcomes are counted in ``hearth_ci_upstream_rejected_total{source,reason}``; the
reason label takes only the fixed values used in this module and its callers.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from hearth_ci import metrics
from hearth_runtime.text import neutral, safe_url

MAX_DEPTH = 48
"""Deepest nesting accepted anywhere in a document (Zuul's own is about 10)."""
MAX_NODES = 5_000_000
"""Values in one document (a scaled OpenStack status is well under a million)."""
MAX_INT_DIGITS = 20
# Sane wall-clock range for anything Zuul calls a time: 2000-01-01 .. 2100-01-01.
MIN_EPOCH_MS = 946_684_800_000
MAX_EPOCH_MS = 4_102_444_800_000
MAX_DURATION_MS = 30 * 24 * 3600 * 1000  # no job or queue wait lasts a month
MAX_COUNT = 10_000_000
NAME_LIMIT = 200
TEXT_LIMIT = 1000
URL_LIMIT = 2000


class Refused(Exception):
    """The whole document is refused; ``reason`` is the metric label, str() is for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _NumberRefused(ValueError):
    def __init__(self, reason: str, literal: str) -> None:
        super().__init__(literal)
        self.reason = reason


def _refuse_constant(literal: str) -> Any:
    raise _NumberRefused("non_finite", literal)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e999 parses to inf without passing parse_constant
        raise _NumberRefused("non_finite", literal)
    return value


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise _NumberRefused("number_too_large", literal[:30])
    return int(literal)


def load_json(body: bytes | str, source: str) -> Any:
    """Parse ``body`` or raise :class:`Refused` (counted) saying why, for people."""
    try:
        data = json.loads(
            body,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except _NumberRefused as exc:
        raise _counted(source, exc.reason, f"a refused number literal ({exc})") from None
    except RecursionError:
        raise _counted(source, "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        size = len(body)
        raise _counted(
            source, "invalid_json", f"invalid JSON ({size} bytes, truncated?): {exc}"
        ) from None
    check_tree(data, source)
    return data


def check_tree(data: Any, source: str) -> None:
    """Refuse documents nested deeper than MAX_DEPTH or with more than MAX_NODES values."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise _counted(source, "too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
        if nodes > MAX_NODES:
            raise _counted(source, "too_many_nodes", f"JSON with more than {MAX_NODES} values")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def _counted(source: str, reason: str, message: str) -> Refused:
    metrics.UPSTREAM_REJECTED.labels(source, reason).inc()
    return Refused(reason, message)


class Reader:
    """Typed reads of one document's values; what does not fit is skipped and counted."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.skipped: Counter[str] = Counter()

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def finish(self) -> str:
        """Count the skips in the metric; a short summary for health ("" when none)."""
        for reason, count in self.skipped.items():
            metrics.UPSTREAM_REJECTED.labels(self.source, reason).inc(count)
        if not self.skipped:
            return ""
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return f"skipped malformed parts: {parts}"

    # -------------------------------------------------------------------- containers
    def obj(self, value: Any, reason: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        if value is not None:
            self.skip(reason)
        return None

    def items(self, value: Any, reason: str) -> list[Any]:
        """A list (absent or null = empty; another type is skipped)."""
        if isinstance(value, list):
            return value
        if value is not None:
            self.skip(reason)
        return []

    def objs(self, value: Any, reason: str) -> list[dict[str, Any]]:
        """The dict entries of a list; any other entry (null, number, ...) is skipped."""
        out = []
        for entry in self.items(value, reason):
            if isinstance(entry, dict):
                out.append(entry)
            else:
                self.skip(reason)
        return out

    # -------------------------------------------------------------------- scalars
    def text(self, value: Any, limit: int = NAME_LIMIT) -> str:
        """A neutral, bounded string; numbers become text; other types are skipped."""
        if value is None:
            return ""
        if isinstance(value, str):
            return neutral(value, limit)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return neutral(value, limit)
        self.skip("field_type")
        return ""

    def texts(self, value: Any, limit: int = NAME_LIMIT) -> list[str]:
        """The non-empty strings of a list (bounded, neutral)."""
        return [t for x in self.items(value, "field_type") if (t := self.text(x, limit))]

    def url(self, value: Any) -> str:
        text = self.text(value, URL_LIMIT)
        if not text:
            return ""
        if text.startswith(("http://", "https://")):
            safe = safe_url(text)
        else:
            safe = text if _relative_path(text) else ""
        if not safe:
            self.skip("url")
        return safe

    def flag(self, value: Any, default: bool) -> bool:
        if isinstance(value, bool):
            return value
        if value is not None:
            self.skip("field_type")
        return default

    def _number(self, value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.skip("field_type")
            return None
        if not math.isfinite(value):
            self.skip("number_range")
            return None
        return float(value)

    def _ranged(self, value: Any, low: float, high: float, reason: str) -> float | None:
        number = self._number(value)
        if number is None:
            return None
        if not low <= number <= high:
            self.skip(reason)
            return None
        return number

    def time_ms(self, value: Any) -> int | None:
        """An epoch time in ms within 2000..2100; else None (skipped)."""
        number = self._ranged(value, MIN_EPOCH_MS, MAX_EPOCH_MS, "time_range")
        return None if number is None else int(number)

    def time_s(self, value: Any) -> float | None:
        number = self._ranged(value, MIN_EPOCH_MS / 1000, MAX_EPOCH_MS / 1000, "time_range")
        return number

    def duration_ms(self, value: Any) -> int | None:
        """A duration in ms within 0..30 days; else None (skipped)."""
        number = self._ranged(value, 0, MAX_DURATION_MS, "duration_range")
        return None if number is None else int(number)

    def duration_s(self, value: Any) -> float | None:
        return self._ranged(value, 0, MAX_DURATION_MS / 1000, "duration_range")

    def count(self, value: Any) -> int:
        """A queue length or similar: 0..MAX_COUNT (out of range: clamped)."""
        number = self._number(value)
        if number is None:
            return 0
        if not 0 <= number <= MAX_COUNT:
            self.skip("number_range")
        return int(min(max(number, 0), MAX_COUNT))


def _relative_path(text: str) -> bool:
    """Zuul 3+ job URLs are relative (``stream/{uuid}?logfile=console.log``)."""
    return ":" not in text.split("/", 1)[0] and not text.startswith("//") and " " not in text
