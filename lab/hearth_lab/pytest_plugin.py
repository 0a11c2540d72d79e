"""pytest plugin: the function-scoped ``lab`` fixture.

Register with ``pytest_plugins = ["hearth_lab.pytest_plugin"]``. The fixture skips the test
only when :func:`hearth_lab.lab_available` says namespaces cannot be used here.
"""

from collections.abc import Iterator

import pytest

from hearth_lab import Lab, lab_available


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh :class:`hearth_lab.Lab` (prefix "t"), torn down after the test."""
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"hearth_lab: {reason}")
    with Lab(prefix="t") as the_lab:
        yield the_lab
