"""Total reading of what Zuul and Gerrit send: any bytes in, typed values or a refusal out.

Nothing an upstream sends may end a poller. A document is *refused* as a whole (the last
good data stays) when it cannot be trusted at all: too large, not JSON, NaN/Infinity
literals, nested too deep, or the wrong shape at the top.
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
import re
from collections import Counter
from typing import Any

from hearth_ci import metrics
from hearth_runtime.text import neutral

# Nesting depth is bounded by the JSON parser itself: past the interpreter's recursion
# limit (about 1000 levels) it raises RecursionError and the document is refused
# (too_deep). The typed reading below only descends Zuul's and Gerrit's fixed structure,
# so deeper parts anywhere else are never walked; the response size limit bounds memory.
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


class _NonFinite(ValueError):
    pass


def _refuse_constant(literal: str) -> Any:
    raise _NonFinite(literal)


def load_json(body: bytes | str, source: str) -> Any:
    """Parse ``body`` or raise :class:`Refused` (counted) saying why, for people.

    ``NaN``/``Infinity`` literals are refused here (Python's json accepts them); a number
    too large for a float (``1e999``) parses to infinity and is refused where a value is
    read (:meth:`Reader._number`). No per-number hook: it would make parsing 5x slower."""
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except _NonFinite as exc:
        raise _counted(source, "non_finite", f"a refused number literal ({exc})") from None
    except RecursionError:
        raise _counted(source, "too_deep", "JSON nested too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        size = len(body)
        raise _counted(
            source, "invalid_json", f"invalid JSON ({size} bytes, truncated?): {exc}"
        ) from None


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
        if value.__class__ is str:  # the common case first, at C speed (hot: Zuul's jobs)
            return value if len(value) <= limit and value.isprintable() else neutral(value, limit)
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
        if not isinstance(value, str) or text != value:  # control characters, or cut
            safe = ""
        elif _HTTP_URL.match(text):
            # The regex is what safe_url checks (http(s), a host, no whitespace), at C
            # speed: a Zuul document holds thousands of URLs. Non-printables are out above.
            safe = text
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
        if value is None:
            return None
        cls = value.__class__
        if (cls is int or cls is float) and low <= value <= high:  # NaN fails the range
            return float(value)
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


_SPACE = re.compile(r"\s")
_HTTP_URL = re.compile(r"(?i)https?://[^\s/?#]+(?:[/?#]\S*)?\Z")


def _relative_path(text: str) -> bool:
    """Zuul 3+ job URLs are relative (``stream/{uuid}?logfile=console.log``)."""
    head = text.split("/", 1)[0]
    return ":" not in head and not text.startswith("//") and not _SPACE.search(text)
