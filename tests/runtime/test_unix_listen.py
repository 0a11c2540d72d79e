"""A service listening on ``grpc_listen: unix:/path`` (how docker-compose.yml joins the
gateway to its backends): the socket is connectable by its owner and its group, nobody else,
whatever the process's umask (the health probe following it: test_healthcheck.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from hearth_runtime import Runtime, ServiceConfig, ServiceSpec, start_service

OTHER_UID = 54_321  # no user of this machine: only the group can let it in


async def _setup(runtime: Runtime[ServiceConfig]) -> None:
    return None


async def _connect_as(path: Path, uid: int, gid: int) -> tuple[int, str]:
    """Connect to the socket as ``uid``:``gid`` (a child that drops root). A plain connect is
    exactly what the socket's mode decides, and it needs no import after dropping root (this
    machine's Python may live where that uid cannot read)."""
    code = (
        "import os, socket, sys; s = socket.socket(socket.AF_UNIX);"
        f" os.setgroups([]); os.setgid({gid}); os.setuid({uid})\n"
        f"try: s.connect({str(path)!r}); print('connected')\n"
        "except OSError as e: print(type(e).__name__); sys.exit(1)"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode().strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing uid needs root")
async def test_unix_listen_admits_owner_and_group_only() -> None:
    # Compose's containers run with umask 022, which would leave the group without write
    # permission, i.e. unable to connect; the runtime sets the mode itself.
    previous = os.umask(0o022)
    # A folder anyone may enter (pytest's tmp_path is under a root-only one): the socket's
    # own mode is what is tested.
    folder = Path(tempfile.mkdtemp(prefix="hearth-sock-"))
    os.chmod(folder, 0o755)
    path = folder / "svc.sock"
    config = ServiceConfig(grpc_listen=f"unix:{path}", metrics_listen="127.0.0.1:0")
    try:
        runtime = await start_service(ServiceSpec("sock", ServiceConfig, _setup), config)
    finally:
        os.umask(previous)
    try:
        info = path.stat()
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o660
        # A stranger in the socket's group connects; the same stranger in another group not.
        assert await _connect_as(path, OTHER_UID, info.st_gid) == (0, "connected")
        assert await _connect_as(path, OTHER_UID, OTHER_UID) == (1, "PermissionError")
    finally:
        await runtime.stop(grace=0)
        shutil.rmtree(folder, ignore_errors=True)


async def test_unix_listen_in_the_uri_form_is_also_restricted(tmp_path: Path) -> None:
    path = tmp_path / "svc.sock"
    config = ServiceConfig(grpc_listen=f"unix://{path}", metrics_listen="127.0.0.1:0")
    runtime = await start_service(ServiceSpec("sock", ServiceConfig, _setup), config)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
    finally:
        await runtime.stop(grace=0)
