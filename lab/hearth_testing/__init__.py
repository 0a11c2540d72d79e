"""Helpers the tests and benchmarks share: run a service as a real process and talk to it."""

from hearth_testing.process import ServiceProcess, free_port
from hearth_testing.scrape import metric_value, scrape
from hearth_testing.wait import wait_for, wait_for_async

__all__ = [
    "ServiceProcess",
    "free_port",
    "metric_value",
    "scrape",
    "wait_for",
    "wait_for_async",
]
