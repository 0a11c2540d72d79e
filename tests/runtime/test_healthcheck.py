"""The container health probe against a real server: SERVING, NOT_SERVING, unreachable."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from hearth_runtime import Runtime, ServiceConfig, ServiceSpec, start_service
from hearth_runtime.healthcheck import probe_address


async def _setup(runtime: Runtime[ServiceConfig]) -> None:
    return None


async def _probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hearth_runtime.healthcheck",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode().strip()


@pytest.mark.parametrize(
    ("listen", "dial"),
    [
        ("[::]:50061", "[::1]:50061"),
        ("0.0.0.0:9", "127.0.0.1:9"),
        ("10.1.2.3:7", "10.1.2.3:7"),
        ("unix:/run/x.sock", "unix:/run/x.sock"),
    ],
)
def test_probe_address_dials_loopback_for_wildcards(listen: str, dial: str) -> None:
    assert probe_address(listen) == dial


async def test_probe_follows_serving_state_of_a_real_server() -> None:
    config = ServiceConfig(grpc_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    runtime = await start_service(ServiceSpec("probe", ServiceConfig, _setup), config)
    try:
        address = f"127.0.0.1:{runtime.grpc_port}"
        code, out = await _probe(address)
        assert (code, out) == (0, f"{address}: SERVING")
        # --env wins over the positional address, with the wildcard mapped to loopback.
        env = {"HEARTH_PROBE_GRPC_LISTEN": f"0.0.0.0:{runtime.grpc_port}"}
        code, out = await _probe("127.0.0.1:1", "--env", "HEARTH_PROBE_GRPC_LISTEN", env=env)
        assert (code, out) == (0, f"{address}: SERVING")
        await runtime.set_serving(False)
        code, out = await _probe(address)
        assert (code, out) == (1, f"{address}: NOT_SERVING")
    finally:
        await runtime.stop(grace=0)


async def test_probe_fails_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out = await _probe(f"127.0.0.1:{port}", "--timeout", "2")
    assert code == 1
    assert out.startswith(f"127.0.0.1:{port}: UNAVAILABLE")
