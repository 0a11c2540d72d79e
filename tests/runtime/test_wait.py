"""The shared polling helpers."""

import itertools

import pytest

from hearth_testing import wait_for, wait_for_async


def test_wait_for_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_for("three", lambda: (n := next(counter)) >= 3 and n, timeout=5) == 3


def test_wait_for_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the moon .*last: 0"):
        wait_for("the moon", lambda: 0, timeout=0.1)


async def test_wait_for_async() -> None:
    counter = itertools.count()

    async def check() -> int:
        return next(counter) >= 2

    assert await wait_for_async("two", check, within=5) is True
    with pytest.raises(AssertionError, match="never"):

        async def never() -> bool:
            return False

        await wait_for_async("never", never, within=0.1)
