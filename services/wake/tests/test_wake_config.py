"""The declarative ``hosts:`` list is validated at start: a bad entry stops the service.

Each entry is valid apart from one field, so a validation regression would start a service
that watches and probes its hosts. That must never reach this machine's real interfaces: the
service runs in a network namespace of its own that holds nothing but loopback (checked
before use; the test skips rather than run without it).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from hearth_testing import ServiceProcess


@pytest.fixture(scope="module")
def isolated() -> Sequence[str]:
    """A command prefix running its command in a new, empty network namespace (lo up)."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    prefix = ["unshare", *user, "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    try:
        res = subprocess.run(
            [*prefix, "ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"no empty network namespace for the service: {exc}")
    if res.returncode != 0:
        pytest.skip(f"no empty network namespace for the service: {res.stderr.strip()}")
    links = [line.split(":")[1].strip() for line in res.stdout.splitlines()]
    assert links == ["lo"], res.stdout  # nothing to send on but loopback
    return prefix


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ("name: devbox\n    mac: 02:00:00:00:00\n    ipv4: 198.18.0.9", "hosts[0].mac"),
        ("name: Dev_Box\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9", "hosts[0].name"),
        (
            "name: devbox\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9\n"
            "    send_methods: [pigeon]",
            "hosts[0].send_methods[0]",
        ),
        (
            "name: devbox\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9\n"
            "    secureon_password: aa:bb",
            "hosts[0].secureon_password",
        ),
    ],
)
def test_a_bad_declared_host_stops_the_service_naming_it(
    tmp_path: Path, isolated: Sequence[str], entry: str, named: str
) -> None:
    config = tmp_path / "wake.yaml"
    config.write_text(f"hosts:\n  - {entry}\n")
    proc = ServiceProcess(
        "wake",
        env={
            "HEARTH_WAKE_GRPC_LISTEN": "127.0.0.1:0",
            "HEARTH_WAKE_METRICS_LISTEN": "127.0.0.1:0",
            "HEARTH_WAKE_STATE_DIR": str(tmp_path / "state"),
        },
        args=["--config", str(config)],
        prefix=isolated,
    )
    with pytest.raises(RuntimeError) as info:
        proc.start(timeout=20)
    assert "exited with 2" in str(info.value)
    assert named in proc.output, proc.output
    assert not (tmp_path / "state" / "wake.sqlite").exists() or "devbox" not in (
        (tmp_path / "state" / "wake.sqlite").read_bytes().decode("latin-1")
    )
