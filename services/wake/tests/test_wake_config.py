"""The declarative ``hosts:`` list is validated like API requests at start: a bad entry is
quarantined (shown, logged, not watched, not stored), it never stops the service.

Each entry is valid apart from one field, so a validation regression would watch and probe
the host. That must never reach this machine's real interfaces: the service runs in a
private network namespace (loopback and a veth pair with both ends inside; see
``labtools.private_net_prefix``), the test skips rather than run without it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import pytest

from hearth.wake.v1 import wake_pb2
from hearth_wake_lab.labtools import PrivateWake, private_net_prefix

PREFIX = private_net_prefix()
pytestmark = pytest.mark.skipif(isinstance(PREFIX, str), reason=str(PREFIX))
GOOD = "name: good\n    mac: 02:00:00:00:00:08\n    ipv4: 198.18.0.8\n"


def stored_ids(state: Path) -> list[str]:
    path = state / "wake.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT id FROM hosts ORDER BY id")]


@pytest.mark.parametrize(
    ("entry", "shown_as", "named"),
    [
        ("name: devbox\n    mac: 02:00:00:00:00\n    ipv4: 198.18.0.9", "devbox", "hosts[0].mac"),
        (
            "name: Dev_Box\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9",
            "Dev_Box",
            "hosts[0].name",
        ),
        (
            "name: devbox\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9\n"
            "    send_methods: [pigeon]",
            "devbox",
            "hosts[0].send_methods[0]",
        ),
        (
            "name: devbox\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9\n"
            "    secureon_password: aa:bb",
            "devbox",
            "hosts[0].secureon_password",
        ),
        (
            "name: devbox\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9\n"
            "    ipv6: fe80::9%eth0",
            "devbox",
            "hosts[0].ipv6",
        ),
        (
            "name: devbox\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9\n"
            "    retry_interval: 0.000000001",
            "devbox",
            "hosts[0].retry_interval",
        ),
        (
            "name: devbox\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9\n    cooldown: .nan",
            "devbox",
            "hosts[0].cooldown",
        ),
        (
            "name: devbox\n    mac: [2, 0]\n    ipv4: 198.18.0.9\n    interface: eth0",
            "devbox",
            "hosts[0].mac",
        ),
        (
            "name: devbox\n    mac: 02:00:00:00:00:09\n    ipv4: 198.18.0.9\n"
            "    interface: a-very-long-interface-name",
            "devbox",
            "hosts[0].interface",
        ),
    ],
)
def test_a_bad_declared_host_is_quarantined_and_the_service_starts(
    tmp_path: Path, entry: str, shown_as: str, named: str
) -> None:
    assert not isinstance(PREFIX, str)
    wake = PrivateWake(PREFIX, tmp_path, config=f"hosts:\n  - {entry}\n  - {GOOD}")
    try:
        wake.start()
        assert wake.health() == 1  # SERVING: the good host is watched
        hosts = {h.name: h for h in wake.stub.ListHosts(wake_pb2.ListHostsRequest()).hosts}
        assert set(hosts) == {f"hosts/{shown_as}", "hosts/good"}
        bad = hosts[f"hosts/{shown_as}"]
        assert (
            bad.state == wake_pb2.HOST_STATE_QUARANTINED
            and bad.origin == wake_pb2.HOST_ORIGIN_CONFIG
        )
        assert bad.quarantine_reason.startswith(named), bad.quarantine_reason
        assert hosts["hosts/good"].state != wake_pb2.HOST_STATE_QUARANTINED
        assert not hosts["hosts/good"].quarantine_reason
        assert "host quarantined" in wake.output and named in wake.output
        # A quarantined host is never woken.
        with pytest.raises(grpc.RpcError) as info:
            wake.stub.WakeHost(wake_pb2.WakeHostRequest(name=f"hosts/{shown_as}"))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        wake.stop()
    assert stored_ids(wake.state_dir) == ["good"]
