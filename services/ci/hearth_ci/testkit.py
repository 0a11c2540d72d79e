"""Helpers the ci tests, benchmark and demo share: drive a replay server, wait for a
condition with a deadline (no fixed sleeps), configure a service against a replay server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from hearth_ci.config import CiConfig

T = TypeVar("T")


async def control(url: str, **changes: Any) -> dict[str, Any]:
    """Switch a replay server's document, shape or faults (POST /_control); its state."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/_control", json=changes) as resp,
    ):
        if resp.status != 200:
            raise RuntimeError(f"replay control failed: HTTP {resp.status} {await resp.text()}")
        data: dict[str, Any] = await resp.json()
        return data


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], within: float = 10.0
) -> T:
    """Poll ``probe`` until ``check`` holds; AssertionError with the last value otherwise."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s; last value:\n{value}")
        await asyncio.sleep(0.05)


def replay_config(url: str, state_dir: Path, **overrides: Any) -> CiConfig:
    """A ci service polling the replay server at ``url`` quickly (tests, benchmarks)."""
    settings: dict[str, Any] = {
        "grpc_listen": "127.0.0.1:0",
        "metrics_listen": "127.0.0.1:0",
        "state_dir": state_dir,
        "zuul_url": url,
        "zuul_tenant": "openstack",
        "gerrit_url": url,
        "gerrit_user": "danms",
        "gerrit_password": "secret",
        "http_timeout_seconds": 1.0,
        "default_refresh_seconds": 0.3,
        "min_refresh_seconds": 0.1,
        "idle_poll_seconds": 0.2,
        "backoff_base_seconds": 0.1,
        "backoff_max_seconds": 0.4,
    }
    settings.update(overrides)
    return CiConfig(**settings)
