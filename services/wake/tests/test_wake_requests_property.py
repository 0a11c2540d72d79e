"""Generated CreateHost/UpdateHost requests against a real hearth-wake (issue 11).

Each field is drawn from values known valid or known invalid (by the rules documented in
wake.proto), so every request has an expected outcome: invalid -> INVALID_ARGUMENT naming
one of the invalid fields, nothing stored or changed; valid -> stored, and still loaded
(not quarantined) after a restart. Never UNKNOWN or INTERNAL. The service runs in a
private network namespace (see ``labtools.private_net_prefix``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.wake.v1 import wake_pb2
from hearth_wake.labtools import PrivateWake, private_net_prefix

H = wake_pb2
PREFIX = private_net_prefix()
pytestmark = pytest.mark.skipif(isinstance(PREFIX, str), reason=str(PREFIX))
_unique = itertools.count(2)  # addresses: 198.18.0.2 and on (eth0 is 198.18.0.1/16)
_ids = itertools.count(1)


def _dur(seconds: int, nanos: int = 0) -> Duration:
    return Duration(seconds=seconds, nanos=nanos)


# Per field: (valid makers, invalid makers); a maker gets a number unique to the request so
# that valid MACs and addresses never collide (ALREADY_EXISTS is not what is tested here).
Maker = Callable[[int], Any]
FIELDS: dict[str, tuple[list[Maker], list[Maker]]] = {
    "mac": (
        [
            lambda n: f"02:00:00:00:{n >> 8:02x}:{n & 255:02x}",
            lambda n: f"02-00-00-AA-{n >> 8:02X}-{n & 255:02X}",
            lambda n: f"0200000b{n >> 8:02x}{n & 255:02x}",
        ],
        [
            lambda n: "",
            lambda n: "01:00:5e:00:00:01",
            lambda n: "ff:ff:ff:ff:ff:ff",
            lambda n: "00:00:00:00:00:00",
            lambda n: "02:00:00:00:00",
            lambda n: "02:00:00:00:00:0g",
            lambda n: "02:00:00:00:00:01" * 8,
            lambda n: "0" * 100_000,
        ],
    ),
    "ipv4": (
        [lambda n: f"198.18.{n >> 8}.{n & 255}"],
        [
            lambda n: "",
            lambda n: "0.0.0.0",
            lambda n: "0.1.2.3",
            lambda n: "127.0.0.1",
            lambda n: "224.0.0.1",
            lambda n: "255.255.255.255",
            lambda n: "240.0.0.1",
            lambda n: "198.18.0.300",
            lambda n: "198.018.0.9",
            lambda n: "fd00::1",
            lambda n: "1" * 60,
        ],
    ),
    "ipv6": (
        [lambda n: "", lambda n: f"fd00::{n:x}", lambda n: f"fe80::{n:x}"],
        [
            lambda n: f"fe80::{n:x}%eth0",
            lambda n: f"fd00::{n:x}%2",
            lambda n: "ff02::1",
            lambda n: "::",
            lambda n: "::1",
            lambda n: "::ffff:198.18.0.9",
            lambda n: "fd00::zz",
            lambda n: "f" * 50,
            lambda n: "f" * 100_000,
        ],
    ),
    "interface": (
        [lambda n: "", lambda n: "eth0"],
        [
            lambda n: "nope0",
            lambda n: "a" * 16,
            lambda n: "bad/x",
            lambda n: "eth0:1",
            lambda n: "..",
            lambda n: "eth 0",
            lambda n: "eth\x1b[0",
            lambda n: "\u00e90",
        ],
    ),
    "send_methods": (
        [lambda n: [], lambda n: [1], lambda n: [5, 4, 3, 2, 1], lambda n: [2, 2, 2, 1]],
        [lambda n: [0], lambda n: [1, 6], lambda n: [99], lambda n: [1] * 9],
    ),
    "secureon_password": (
        [lambda n: "", lambda n: "aa:bb:cc:dd", lambda n: "AABBCCDDEEFF"],
        [lambda n: "aa:bb:cc", lambda n: "zz:zz:zz:zz", lambda n: "aa" * 40, lambda n: "a" * 10**5],
    ),
    "only_from": (
        [lambda n: [], lambda n: ["10.0.0.0/8", "02:00:00:00:00:05", "fd00::/8", "198.18.0.5"]],
        [
            lambda n: ["fe80::1%eth0"],
            lambda n: ["10.0.0.0/8", "x"],
            lambda n: ["10.0.0.0/33"],
            lambda n: [f"10.0.{i}.0/24" for i in range(65)],
            lambda n: ["1" * 70],
            lambda n: ["1" * 100_000],
        ],
    ),
    "ignore_from": (
        [lambda n: [], lambda n: ["02:00:00:00:00:06"]],
        [lambda n: ["01:00:5e:00:00:01"], lambda n: [""], lambda n: ["nonsense"]],
    ),
    "alive_timeout": (
        [lambda n: None, lambda n: _dur(1), lambda n: _dur(7 * 86400), lambda n: _dur(3, 5)],
        [lambda n: _dur(0, 999_999_999), lambda n: _dur(7 * 86400, 1), lambda n: _dur(-3)],
    ),
    "wake_timeout": (
        [lambda n: None, lambda n: _dur(60), lambda n: _dur(3600)],
        [lambda n: _dur(0), lambda n: _dur(3601), lambda n: _dur(5, -1)],
    ),
    "retry_interval": (
        [lambda n: None, lambda n: _dur(0, 100_000_000), lambda n: _dur(600)],
        [
            lambda n: _dur(0, 1),
            lambda n: _dur(0, 99_999_999),
            lambda n: _dur(601),
            lambda n: _dur(1, 2_000_000_000),
            lambda n: _dur(315_576_000_001),
        ],
    ),
    "cooldown": (
        [lambda n: None, lambda n: _dur(0, 100_000_000), lambda n: _dur(86400)],
        [lambda n: _dur(0), lambda n: _dur(-1, -5), lambda n: _dur(86401)],
    ),
}
REQUIRED = ("mac", "ipv4")


@dataclass
class Drawn:
    values: dict[str, Any] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)

    def host(self, name: str = "") -> wake_pb2.Host:
        msg = wake_pb2.Host(name=name)
        for key, value in self.values.items():
            if value is None:
                continue
            if isinstance(value, Duration):
                getattr(msg, key).CopyFrom(value)
            elif isinstance(value, list):
                getattr(msg, key).extend(value)
            else:
                setattr(msg, key, value)
        return msg


@st.composite
def drawn(draw: st.DrawFn, keys: tuple[str, ...] = tuple(FIELDS)) -> Drawn:
    n = next(_unique)
    assert n < 65000, "more examples than unique addresses"
    out = Drawn()
    # Half the requests are valid; the others have one or two invalid fields.
    wrong: set[str] = set()
    if draw(st.booleans()):
        wrong = draw(st.sets(st.sampled_from(keys), min_size=1, max_size=2))
    for key in keys:
        good, bad = FIELDS[key]
        if key in wrong:
            out.values[key] = draw(st.sampled_from(bad))(n)
            out.bad.add(key)
        else:
            out.values[key] = draw(st.sampled_from(good))(n)
    return out


def _call(fn: Callable[[Any], Any], request: Any) -> tuple[grpc.StatusCode, str, Any]:
    try:
        return grpc.StatusCode.OK, "", fn(request)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", None


def _settings(host: wake_pb2.Host) -> tuple[Any, ...]:
    return (
        host.mac,
        host.ipv4,
        host.ipv6,
        host.interface,
        tuple(host.send_methods),
        host.has_secureon_password,
        tuple(host.only_from),
        tuple(host.ignore_from),
        *(
            getattr(host, k).ToNanoseconds()
            for k in FIELDS
            if k.endswith(("timeout", "interval", "cooldown"))
        ),
    )


def test_generated_create_and_update_requests(tmp_path: Path) -> None:
    assert not isinstance(PREFIX, str)
    wake = PrivateWake(PREFIX, tmp_path).start()
    stored: dict[str, tuple[Any, ...]] = {}
    seen = {"created": 0, "rejected": 0, "updated": 0, "update_rejected": 0}
    try:

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(drawn(), st.data())
        def check(created: Drawn, data: st.DataObject) -> None:
            host_id = f"h{next(_ids)}"
            code, details, host = _call(
                lambda r: wake.stub.CreateHost(r, timeout=10),
                H.CreateHostRequest(host_id=host_id, host=created.host()),
            )
            if created.bad:
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (created, code, details)
                assert any(details.startswith(f"host.{k}") for k in created.bad), details
                code, _, _ = _call(
                    lambda r: wake.stub.GetHost(r, timeout=10),
                    H.GetHostRequest(name=f"hosts/{host_id}"),
                )
                assert code == grpc.StatusCode.NOT_FOUND  # nothing stored
                seen["rejected"] += 1
                return
            assert code == grpc.StatusCode.OK, (created, code, details)
            assert host.state != H.HOST_STATE_QUARANTINED
            stored[host_id] = _settings(host)
            seen["created"] += 1
            # An update of some fields of it.
            keys = data.draw(
                st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=4, unique=True)
            )
            patch = data.draw(drawn(tuple(keys)))
            code, details, updated = _call(
                lambda r: wake.stub.UpdateHost(r, timeout=10),
                H.UpdateHostRequest(
                    host=patch.host(f"hosts/{host_id}"), update_mask=FieldMask(paths=keys)
                ),
            )
            after = wake.stub.GetHost(H.GetHostRequest(name=f"hosts/{host_id}"), timeout=10)
            if patch.bad:
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (patch, code, details)
                assert any(details.startswith(f"host.{k}") for k in patch.bad), details
                assert _settings(after) == stored[host_id]  # nothing changed
                seen["update_rejected"] += 1
                return
            assert code == grpc.StatusCode.OK, (patch, code, details)
            assert _settings(after) == _settings(updated)
            stored[host_id] = _settings(updated)
            seen["updated"] += 1

        check()
        # Both sides of every call were exercised (the draws favour valid fields).
        assert all(count >= 3 for count in seen.values()), seen
        wake.restart()
        assert wake.health() == 1
        hosts = {h.name: h for h in wake.stub.ListHosts(H.ListHostsRequest(page_size=1000)).hosts}
        assert sorted(hosts) == sorted(f"hosts/{k}" for k in stored)
        for host_id, expected in stored.items():
            host = hosts[f"hosts/{host_id}"]
            assert host.state != H.HOST_STATE_QUARANTINED, host.quarantine_reason
            assert _settings(host) == expected
        assert "crashed" not in wake.output and "internal error" not in wake.output
    finally:
        wake.stop()
