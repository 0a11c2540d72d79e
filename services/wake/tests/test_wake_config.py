"""The declarative ``hosts:`` list is validated at start: a bad entry stops the service.

(Valid declared hosts are tested inside the lab, never here: a valid host would be
watched and probed on this machine's real interface.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth_testing import ServiceProcess


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
    tmp_path: Path, entry: str, named: str
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
    )
    with pytest.raises(RuntimeError) as info:
        proc.start(timeout=20)
    assert "exited with 2" in str(info.value)
    assert named in proc.output, proc.output
    assert not (tmp_path / "state" / "wake.sqlite").exists() or "devbox" not in (
        (tmp_path / "state" / "wake.sqlite").read_bytes().decode("latin-1")
    )
