"""hearth_runtime.timeconv: the one seconds <-> Duration/Timestamp conversion, by property."""

from __future__ import annotations

import math

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import assume, example, given
from hypothesis import strategies as st

from hearth_runtime import InvalidArgument
from hearth_runtime.timeconv import (
    MAX_DURATION_SECONDS,
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    NANOS,
    check_duration,
    duration_from_seconds,
    duration_seconds,
    epoch_of,
    milliseconds_of,
    seconds_of,
    timestamp_from_epoch,
    timestamp_now,
)

# Where a float still resolves a nanosecond: a round trip there is exact to 1 ns.
FINE = 2.0**22


def _tolerance(seconds: float) -> float:
    """What a float of about ``seconds`` can hold: 1 ns, or its own resolution beyond."""
    return max(1e-9, 2 * math.ulp(seconds))


def _valid_duration(seconds: int, nanos: int) -> duration_pb2.Duration:
    sign = -1 if seconds < 0 else 1
    return duration_pb2.Duration(seconds=seconds, nanos=sign * nanos if seconds else nanos)


durations = st.builds(
    _valid_duration,
    st.integers(-MAX_DURATION_SECONDS, MAX_DURATION_SECONDS),
    st.integers(0, NANOS - 1),
)
fine_durations = st.builds(
    _valid_duration, st.integers(-int(FINE) + 1, int(FINE) - 1), st.integers(0, NANOS - 1)
)
timestamps = st.builds(
    lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n),
    st.integers(MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS),
    st.integers(0, NANOS - 1),
)
in_duration_range = st.floats(-MAX_DURATION_SECONDS, MAX_DURATION_SECONDS)
in_timestamp_range = st.floats(MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS)


def _is_valid_duration(d: duration_pb2.Duration) -> bool:
    try:
        check_duration("d", d)
    except InvalidArgument:
        return False
    return True


@given(in_duration_range)
@example(0.0)
@example(-0.0)
@example(1e-10)
@example(-1.5)
@example(0.9999999999)  # rounds up to a whole second: nanos must not reach 1e9
@example(-0.9999999999)
@example(float(MAX_DURATION_SECONDS))
@example(-float(MAX_DURATION_SECONDS))
def test_any_finite_seconds_in_range_make_a_valid_duration_within_a_nanosecond(x: float) -> None:
    d = duration_from_seconds(x)
    assert _is_valid_duration(d), d
    assert abs(seconds_of(d) - x) <= _tolerance(x)
    assert abs(d.ToNanoseconds() - x * NANOS) <= max(0.5 + 1e-6, math.ulp(x * NANOS))


@given(in_timestamp_range)
@example(0.0)
@example(-0.4)  # before 1970: seconds -1, nanos 600000000
@example(1_767_225_600.123456789)
@example(float(MIN_TIMESTAMP_SECONDS))
@example(float(MAX_TIMESTAMP_SECONDS))
def test_any_epoch_in_range_makes_a_valid_timestamp_within_a_nanosecond(x: float) -> None:
    t = timestamp_from_epoch(x)
    assert 0 <= t.nanos < NANOS
    assert MIN_TIMESTAMP_SECONDS <= t.seconds <= MAX_TIMESTAMP_SECONDS
    assert abs(epoch_of(t) - x) <= _tolerance(x)
    t.ToJsonString()  # protobuf's own range check agrees


@given(fine_durations)
def test_a_duration_survives_seconds_and_back_to_the_nanosecond(d: duration_pb2.Duration) -> None:
    back = duration_from_seconds(seconds_of(d))
    assert abs(back.ToNanoseconds() - d.ToNanoseconds()) <= 1


@given(durations)
@example(duration_pb2.Duration(seconds=315_576_000_000, nanos=999_969_483))
def test_any_valid_duration_survives_within_the_float_resolution(d: duration_pb2.Duration) -> None:
    x = seconds_of(d)
    # Within a float's resolution of the largest Duration, seconds_of can round up to
    # MAX + 1 s, which no Duration holds (hypothesis found 315576000000 s + 999969483 ns).
    assume(abs(x) < MAX_DURATION_SECONDS + 1)
    back = duration_from_seconds(x)
    assert _is_valid_duration(back)
    assert abs(back.ToNanoseconds() - d.ToNanoseconds()) <= max(1, math.ulp(x) * NANOS)


@given(timestamps)
@example(timestamp_pb2.Timestamp(seconds=1_767_225_600, nanos=999_999_999))
@example(timestamp_pb2.Timestamp(seconds=MAX_TIMESTAMP_SECONDS, nanos=999_984_742))
def test_a_timestamp_survives_epoch_and_back_within_the_float_resolution(
    t: timestamp_pb2.Timestamp,
) -> None:
    x = epoch_of(t)
    # The last instants of year 9999 can round up to 10000-01-01 as a float (CI found
    # 253402300799 s + 999984742 ns): no Timestamp holds that.
    assume(x < MAX_TIMESTAMP_SECONDS + 1)
    back = timestamp_from_epoch(x)
    assert abs(back.ToNanoseconds() - t.ToNanoseconds()) <= max(1, math.ulp(x) * NANOS)


@given(durations)
def test_milliseconds_of_agrees_with_seconds_of(d: duration_pb2.Duration) -> None:
    assert math.isclose(milliseconds_of(d), seconds_of(d) * 1000, rel_tol=1e-15, abs_tol=1e-9)


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused_clearly(x: float) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        duration_from_seconds(x)
    with pytest.raises(ValueError, match="not a finite number"):
        timestamp_from_epoch(x)


@given(
    st.one_of(
        st.floats(min_value=MAX_DURATION_SECONDS + 1.0, allow_infinity=False),
        st.floats(max_value=-MAX_DURATION_SECONDS - 1.0, allow_infinity=False),
    )
)
@example(MAX_DURATION_SECONDS + 1.0)
@example(1e300)
def test_seconds_beyond_a_duration_are_refused_clearly(x: float) -> None:
    with pytest.raises(ValueError, match="beyond a Duration's range"):
        duration_from_seconds(x)


@given(
    st.one_of(
        st.floats(min_value=MAX_TIMESTAMP_SECONDS + 1.0, allow_infinity=False),
        st.floats(max_value=MIN_TIMESTAMP_SECONDS - 1.0, allow_infinity=False),
    )
)
@example(MAX_TIMESTAMP_SECONDS + 1.0)
@example(MIN_TIMESTAMP_SECONDS - 1e-4)
def test_epochs_outside_the_years_1_to_9999_are_refused_clearly(x: float) -> None:
    with pytest.raises(ValueError, match="outside a Timestamp's years"):
        timestamp_from_epoch(x)


def test_now_is_the_wall_clock() -> None:
    import time

    before = time.time()
    now = epoch_of(timestamp_now())
    assert before - 1e-6 <= now <= time.time() + 1e-6


# ----------------------------------------------------------------- a request's Duration
@given(fine_durations, st.floats(-1e6, 1e6), st.floats(0, 2e6))
def test_a_valid_duration_in_bounds_is_its_seconds_and_any_other_names_the_field(
    d: duration_pb2.Duration, low: float, width: float
) -> None:
    high = low + width
    x = seconds_of(d)
    if low <= x <= high:
        assert duration_seconds("req.timeout", d, low, high) == x
    else:
        with pytest.raises(InvalidArgument) as err:
            duration_seconds("req.timeout", d, low, high)
        assert err.value.field == "req.timeout"
        assert "must be between" in err.value.message


@given(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**31), 2**31 - 1),
)
@example(10, NANOS)  # nanos out of range
@example(60, -1)  # nanos of the other sign
@example(-60, 1)
@example(MAX_DURATION_SECONDS + 1, 0)
@example(2**63 - 1, 0)
@example(-(2**63), 0)
def test_any_malformed_duration_is_invalid_argument_naming_the_field(
    seconds: int, nanos: int
) -> None:
    d = duration_pb2.Duration(seconds=seconds, nanos=nanos)
    valid = (
        abs(seconds) <= MAX_DURATION_SECONDS
        and abs(nanos) < NANOS
        and not (seconds > 0 > nanos or seconds < 0 < nanos)
    )
    try:
        value = duration_seconds("watch.refresh_interval", d, -math.inf, math.inf)
    except InvalidArgument as exc:
        assert not valid
        assert exc.field == "watch.refresh_interval"
    else:
        assert valid and value == seconds_of(d)
