"""Seconds <-> ``google.protobuf.Duration``/``Timestamp``: the one place that converts.

Inside hearth, time is a float of seconds (a duration, or a wall clock since the epoch);
on the wire it is a Duration or a Timestamp. The rules:

- Writing (``duration_from_seconds``, ``timestamp_from_epoch``): a finite value within the
  type's range (a Duration +-315,576,000,000 s; a Timestamp 0001-01-01 to 9999-12-31 UTC) is
  rounded to the nearest nanosecond; NaN, an infinity or a value out of range raises
  :class:`ValueError` saying which. A negative Duration is a valid Duration (seconds and
  nanos then share the sign); a Timestamp before 1970 too.
- Reading our own messages (``seconds_of``, ``epoch_of``): plain arithmetic, no checks.
- Reading a request's field (``duration_seconds``): the Duration must be valid (nanos below a
  second, of the seconds' sign, seconds within the range) and its value within the
  caller's bounds, else :class:`~hearth_runtime.errors.InvalidArgument` naming the field.

A float has about 16 significant digits: a round trip is exact to the nanosecond up to about
48 days (2**22 s); beyond, it is as exact as the float (0.24 us for today's epoch seconds).
"""

from __future__ import annotations

import math
import time

from google.protobuf import duration_pb2, timestamp_pb2

from hearth_runtime.errors import InvalidArgument

NANOS = 1_000_000_000
MAX_DURATION_SECONDS = 315_576_000_000
"""The largest Duration, in whole seconds (about 10,000 years; google/protobuf/duration.proto)."""
MIN_TIMESTAMP_SECONDS = -62_135_596_800
"""0001-01-01T00:00:00Z, the earliest Timestamp (google/protobuf/timestamp.proto)."""
MAX_TIMESTAMP_SECONDS = 253_402_300_799
"""9999-12-31T23:59:59Z, the latest Timestamp's whole seconds."""


def nanoseconds_of_seconds(seconds: float) -> int:
    """``seconds`` as whole nanoseconds, rounded to the nearest; ValueError if not finite."""
    if not math.isfinite(seconds):
        raise ValueError(f"{seconds} s is not a finite number of seconds")
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * NANOS)  # the fraction alone: no precision lost to whole
    return whole * NANOS + nanos


def duration_from_seconds(seconds: float) -> duration_pb2.Duration:
    """A Duration of ``seconds`` (to the nearest nanosecond); ValueError for NaN, an infinity
    or beyond +-MAX_DURATION_SECONDS."""
    total = nanoseconds_of_seconds(seconds)
    if abs(total) >= (MAX_DURATION_SECONDS + 1) * NANOS:
        raise ValueError(f"{seconds:g} s is beyond a Duration's range (+-{MAX_DURATION_SECONDS} s)")
    out = duration_pb2.Duration()
    out.FromNanoseconds(total)
    return out


def timestamp_from_epoch(seconds: float) -> timestamp_pb2.Timestamp:
    """A Timestamp of ``seconds`` since the epoch (to the nearest nanosecond); ValueError for
    NaN, an infinity or a time outside the years 1 to 9999."""
    total = nanoseconds_of_seconds(seconds)
    if not MIN_TIMESTAMP_SECONDS * NANOS <= total < (MAX_TIMESTAMP_SECONDS + 1) * NANOS:
        raise ValueError(f"{seconds:g} s since the epoch is outside a Timestamp's years 1-9999")
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(total)
    return out


def timestamp_now() -> timestamp_pb2.Timestamp:
    """The wall clock now, to the nanosecond."""
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(time.time_ns())
    return out


def seconds_of(duration: duration_pb2.Duration) -> float:
    """A Duration's value in seconds (no checks: for messages hearth made itself)."""
    return duration.seconds + duration.nanos / NANOS


def milliseconds_of(duration: duration_pb2.Duration) -> float:
    """A Duration's value in milliseconds (no checks)."""
    return duration.seconds * 1000 + duration.nanos / 1_000_000


def epoch_of(stamp: timestamp_pb2.Timestamp) -> float:
    """A Timestamp's seconds since the epoch (no checks: for messages hearth made itself)."""
    return stamp.seconds + stamp.nanos / NANOS


def check_duration(field: str, value: duration_pb2.Duration) -> None:
    """InvalidArgument naming ``field`` unless ``value`` is a valid Duration: nanos below a
    second and of the seconds' sign, seconds within +-MAX_DURATION_SECONDS."""
    secs, nanos = value.seconds, value.nanos
    if (
        abs(secs) > MAX_DURATION_SECONDS
        or abs(nanos) >= NANOS
        or (secs > 0 and nanos < 0)
        or (secs < 0 and nanos > 0)
    ):
        raise InvalidArgument(
            field, f"is not a valid Duration (seconds={secs}, nanos={nanos}: out of range or sign)"
        )


def check_seconds(field: str, value: float, low: float, high: float) -> float:
    """``value`` if it is finite and within ``[low, high]``, else InvalidArgument naming
    ``field``."""
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low:g} s and {high:g} s, not {value:g} s")
    return value


def duration_seconds(field: str, value: duration_pb2.Duration, low: float, high: float) -> float:
    """A request's Duration in seconds, if it is a valid Duration within ``[low, high]``
    seconds; else InvalidArgument naming ``field``."""
    check_duration(field, value)
    return check_seconds(field, seconds_of(value), low, high)
