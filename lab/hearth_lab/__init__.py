"""hearth_lab: a small LAN of Linux network namespaces for tests, benchmarks and demos.

>>> with Lab(prefix="t") as lab:                       # doctest: +SKIP
...     a, b = lab.add_host("a"), lab.add_host("b")
...     b.run(["ping", "-c", "1", a.ipv4]).returncode
0

Needs root. Importing this package does not import pytest; the ``lab`` fixture lives in
:mod:`hearth_lab.pytest_plugin`. ``python -m hearth_lab sweep`` removes leftovers of
crashed runs.
"""

from hearth_lab._lab import (
    Host,
    Lab,
    LabError,
    LabRecord,
    LabUnavailable,
    lab_available,
    list_labs,
    sweep_stale,
)

__all__ = [
    "Host",
    "Lab",
    "LabError",
    "LabRecord",
    "LabUnavailable",
    "lab_available",
    "list_labs",
    "sweep_stale",
]
