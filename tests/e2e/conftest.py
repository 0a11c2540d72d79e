"""The end-to-end fixture: the demo house (every real service in a lab, the gateway in
front), one per test module (building it takes seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_harness import E2E, FAST  # type: ignore[import-not-found]

from hearth_demo.start import start_house
from hearth_lab import Lab, lab_available


@pytest.fixture(scope="module")
def e2e() -> Iterator[E2E]:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"hearth_lab: {reason}")
    with Lab(prefix="ee") as lab:
        house = start_house(lab, env=FAST)
        world = E2E(house)
        try:
            yield world
        finally:
            world.channel.close()
            house.stop()
