"""Issue 11: what a client or a stored row can do to hearth-wake must never take it down.

Every test runs hearth-wake as a real process in a private network namespace (loopback and
a veth pair whose two ends are both inside it; see ``labtools.private_net_prefix``): what
it sends never reaches this machine's interfaces. The API is reached over a Unix socket.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask

from hearth.wake.v1 import wake_pb2
from hearth_wake_lab.labtools import PrivateWake, private_net_prefix

H = wake_pb2
PREFIX = private_net_prefix()
pytestmark = pytest.mark.skipif(isinstance(PREFIX, str), reason=str(PREFIX))
SERVING = 1


def _prefix() -> list[str]:
    assert not isinstance(PREFIX, str)
    return PREFIX


@pytest.fixture
def wake(tmp_path: Path) -> Iterator[PrivateWake]:
    service = PrivateWake(_prefix(), tmp_path).start()
    try:
        yield service
    finally:
        service.stop()


def valid_host(**fields: object) -> wake_pb2.Host:
    base: dict[str, object] = {"mac": "02:00:00:00:00:09", "ipv4": "198.18.0.9"}
    return wake_pb2.Host(**{**base, **fields})  # type: ignore[arg-type]


def ns(value: int) -> Duration:
    out = Duration()
    out.FromNanoseconds(value)
    return out


def rejected(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)  # type: ignore[operator]
    return info.value


def names(wake: PrivateWake) -> list[str]:
    return [h.name for h in wake.stub.ListHosts(H.ListHostsRequest(), timeout=10).hosts]


def test_a_scoped_ipv6_address_is_rejected_and_the_service_keeps_working(
    wake: PrivateWake,
) -> None:
    # As copied from `ip a`: the scope id made the kernel filter fail to compile after the
    # host was stored; every later change failed and the service no longer started.
    for field, host in [
        ("host.ipv6", valid_host(ipv6="fe80::1%eth0")),
        ("host.ipv6", valid_host(ipv6="fd00::9%1")),
    ]:
        err = rejected(wake.stub.CreateHost, H.CreateHostRequest(host_id="devbox", host=host))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert (err.details() or "").startswith(field), err.details()
    assert names(wake) == []
    created = wake.stub.CreateHost(
        H.CreateHostRequest(host_id="devbox", host=valid_host(ipv6="fd00::9")), timeout=10
    )
    assert created.name == "hosts/devbox"
    assert wake.health() == SERVING
    wake.restart()
    assert names(wake) == ["hosts/devbox"]
    assert wake.health() == SERVING


def test_a_tiny_retry_interval_is_rejected_naming_the_field(wake: PrivateWake) -> None:
    # 1 ns was accepted; the next wake then looped forever on the event loop.
    err = rejected(
        wake.stub.CreateHost,
        H.CreateHostRequest(host_id="devbox", host=valid_host(retry_interval=ns(1))),
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert (err.details() or "").startswith("host.retry_interval"), err.details()
    assert names(wake) == []
    wake.stub.CreateHost(H.CreateHostRequest(host_id="devbox", host=valid_host()), timeout=10)
    err = rejected(
        wake.stub.UpdateHost,
        H.UpdateHostRequest(host=H.Host(name="hosts/devbox", retry_interval=ns(1))),
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert (err.details() or "").startswith("host.retry_interval"), err.details()
    host = wake.stub.GetHost(H.GetHostRequest(name="hosts/devbox"), timeout=10)
    assert host.retry_interval.ToNanoseconds() == 2_000_000_000
    # A manual wake with the stored (default) interval still leaves the loop answering.
    wake.stub.WakeHost(H.WakeHostRequest(name="hosts/devbox"), timeout=10)
    assert names(wake) == ["hosts/devbox"]


def _store_rows(state_dir: Path, hosts: list[tuple[str, str]], wakes: list[str]) -> None:
    """Write rows as an older version or a hand edit would (no validation at all)."""
    with sqlite3.connect(state_dir / "wake.sqlite3") as db:
        for host_id, data in hosts:
            db.execute(
                "INSERT INTO hosts (id, data, create_time, update_time) VALUES (?, ?, 1, 1)",
                (host_id, data),
            )
        for i, data in enumerate(wakes, start=900):
            db.execute("INSERT INTO wakes (id, host, data) VALUES (?, 'scoped', ?)", (i, data))


def _row(**fields: object) -> str:
    base: dict[str, object] = {"mac": "02:00:00:00:00:31", "ipv4": "198.18.0.31"}
    return json.dumps({**base, **fields})


def test_bad_stored_hosts_are_quarantined_shown_and_repairable(tmp_path: Path) -> None:
    wake = PrivateWake(_prefix(), tmp_path).start()
    try:
        wake.stub.CreateHost(H.CreateHostRequest(host_id="good", host=valid_host()), timeout=10)
        wake.stop()
        _store_rows(
            wake.state_dir,
            [
                ("scoped", _row(ipv6="fe80::1%eth0")),  # issue 11's host
                ("spinner", _row(mac="02:00:00:00:00:32", ipv4="198.18.0.32", retry_interval=1e-9)),
                ("garbage", "{not json"),
                ("typed", _row(mac=42, ipv4="198.18.0.34")),
                ("Bad Id", _row(mac="02:00:00:00:00:35", ipv4="198.18.0.35")),
                ("twin", _row(mac="02:00:00:00:00:09", ipv4="198.18.0.36")),  # good's MAC
                ("methods", _row(mac="02:00:00:00:00:37", ipv4="198.18.0.37", methods=[99])),
            ],
            wakes=['{"id": "x"}', "nonsense", json.dumps({"id": 902, "host": "scoped"})[:-1]],
        )
        wake.start()  # today's code exits 1 here (the filter for fe80::1%eth0 fails)
        assert wake.health() == SERVING
        hosts = {h.name: h for h in wake.stub.ListHosts(H.ListHostsRequest(), timeout=10).hosts}
        reasons = {
            n: h.quarantine_reason for n, h in hosts.items() if h.state == H.HOST_STATE_QUARANTINED
        }
        assert hosts["hosts/good"].state != H.HOST_STATE_QUARANTINED
        assert sorted(reasons) == [
            "hosts/Bad Id",
            "hosts/garbage",
            "hosts/methods",
            "hosts/scoped",
            "hosts/spinner",
            "hosts/twin",
            "hosts/typed",
        ]
        assert reasons["hosts/scoped"].startswith("host.ipv6"), reasons
        assert reasons["hosts/spinner"].startswith("host.retry_interval"), reasons
        assert reasons["hosts/typed"].startswith("host.mac"), reasons
        assert reasons["hosts/twin"].startswith("host.mac"), reasons
        assert reasons["hosts/methods"].startswith("host.send_methods"), reasons
        assert reasons["hosts/Bad Id"].startswith("name"), reasons
        assert "JSON" in reasons["hosts/garbage"] or "Expecting" in reasons["hosts/garbage"]
        assert hosts["hosts/scoped"].ipv4 == "198.18.0.31"  # what could be read is shown
        stream = wake.stub.WatchHostEvents(H.WatchHostEventsRequest(name="hosts/scoped"))
        first = next(iter(stream))
        stream.cancel()
        assert (
            first.kind == H.HostEvent.KIND_CURRENT and first.host.state == H.HOST_STATE_QUARANTINED
        )
        assert "quarantined" in first.message
        assert "host quarantined" in wake.output
        assert (
            list(wake.stub.ListWakes(H.ListWakesRequest(parent="hosts/-"), timeout=10).wakes) == []
        )
        # Repaired through the API: watched from then on, and stored as valid.
        fixed = wake.stub.UpdateHost(
            H.UpdateHostRequest(
                host=H.Host(name="hosts/scoped", ipv6="fe80::1"),
                update_mask=FieldMask(paths=["ipv6"]),
            ),
            timeout=10,
        )
        assert fixed.state != H.HOST_STATE_QUARANTINED and not fixed.quarantine_reason
        assert fixed.ipv6 == "fe80::1" and fixed.mac == "02:00:00:00:00:31"
        # A repair must pass every rule: still quarantined after a bad one.
        err = rejected(
            wake.stub.UpdateHost,
            H.UpdateHostRequest(
                host=H.Host(name="hosts/spinner", cooldown=ns(5_000_000_000)),
                update_mask=FieldMask(paths=["cooldown"]),
            ),
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.details() or "").startswith("host.retry_interval"), err.details()
        for name in ("hosts/spinner", "hosts/garbage", "hosts/Bad Id", "hosts/typed"):
            wake.stub.DeleteHost(H.DeleteHostRequest(name=name), timeout=10)
        wake.restart()
        hosts = {h.name: h for h in wake.stub.ListHosts(H.ListHostsRequest(), timeout=10).hosts}
        assert sorted(hosts) == ["hosts/good", "hosts/methods", "hosts/scoped", "hosts/twin"]
        assert hosts["hosts/scoped"].state != H.HOST_STATE_QUARANTINED
        assert hosts["hosts/twin"].state == H.HOST_STATE_QUARANTINED
        assert wake.health() == SERVING
    finally:
        wake.stop()


def _token(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_other_request_fields_are_bounded_naming_the_field(wake: PrivateWake) -> None:
    stub = wake.stub
    wake.stub.CreateHost(H.CreateHostRequest(host_id="devbox", host=valid_host()), timeout=10)
    cases: list[tuple[object, object, str]] = [
        (stub.ListHosts, H.ListHostsRequest(page_size=-1), "page_size"),
        (stub.ListHosts, H.ListHostsRequest(page_token="x" * 513), "page_token"),
        (stub.ListHosts, H.ListHostsRequest(page_token="!!"), "page_token"),
        # An offset json reads as infinity once escaped paginate's checks as INTERNAL.
        (
            stub.ListHosts,
            H.ListHostsRequest(page_token=_token({"o": 1e400, "c": "hosts"})),
            "page_token",
        ),
        (
            stub.ListHosts,
            H.ListHostsRequest(page_token=_token({"o": [], "c": "hosts"})),
            "page_token",
        ),
        (
            stub.ListWakes,
            H.ListWakesRequest(parent="hosts/-", page_token=_token({"o": -1e400, "c": "hosts/-"})),
            "page_token",
        ),
        (stub.ListWakes, H.ListWakesRequest(parent="hosts/Bad"), "parent"),
        # Huge texts: an error quoting them would overflow gRPC's metadata limit.
        (stub.GetHost, H.GetHostRequest(name="hosts/" + "a" * 100_000), "name"),
        (
            stub.CreateHost,
            H.CreateHostRequest(host_id="a" * 100_000, host=valid_host()),
            "host_id",
        ),
        (
            stub.CreateHost,
            H.CreateHostRequest(host_id="x", host=valid_host(mac="a" * 100_000)),
            "host.mac",
        ),
        (
            stub.UpdateHost,
            H.UpdateHostRequest(
                host=H.Host(name="hosts/devbox"), update_mask=FieldMask(paths=["x" * 100_000])
            ),
            "update_mask",
        ),
        (stub.ListWakes, H.ListWakesRequest(parent="hosts/" + "b" * 100_000), "parent"),
        (stub.GetHost, H.GetHostRequest(name="hosts/" + "a" * 64), "name"),
        (stub.DeleteHost, H.DeleteHostRequest(name="devbox"), "name"),
        (stub.WakeHost, H.WakeHostRequest(name=""), "name"),
        (
            stub.WaitUntilAwake,
            H.WaitUntilAwakeRequest(name="hosts/devbox", timeout=ns(0)),
            "timeout",
        ),
        (
            stub.WaitUntilAwake,
            H.WaitUntilAwakeRequest(name="hosts/devbox", timeout=ns(3601 * 10**9)),
            "timeout",
        ),
        (
            stub.WaitUntilAwake,
            H.WaitUntilAwakeRequest(name="hosts/devbox", timeout=Duration(seconds=1, nanos=-1)),
            "timeout",
        ),
        (
            stub.UpdateHost,
            H.UpdateHostRequest(
                host=H.Host(name="hosts/devbox"), update_mask=FieldMask(paths=["state"])
            ),
            "update_mask",
        ),
    ]
    for call, request, field in cases:
        err = rejected(call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, err.details())
        assert (err.details() or "").startswith(field), (request, err.details())
    watch = stub.WatchHostEvents(H.WatchHostEventsRequest(name="nope"), timeout=10)
    with pytest.raises(grpc.RpcError) as info:
        next(iter(watch))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert names(wake) == ["hosts/devbox"]
    assert wake.health() == SERVING


def test_the_number_of_hosts_is_bounded_so_the_kernel_filter_fits(tmp_path: Path) -> None:
    # Past ~150 hosts on one interface the kernel refuses the filter (BPF_MAXINSNS) and no
    # host there is watched: at most 100 exist; stored ones past that are quarantined.
    wake = PrivateWake(_prefix(), tmp_path).start()
    wake.stop()
    rows = [
        (
            f"h{i:03d}",
            _row(mac=f"02:00:00:00:01:{i:02x}", ipv4=f"198.18.1.{i}", ipv6=f"fd00::1:{i:x}"),
        )
        for i in range(1, 102)
    ]
    _store_rows(wake.state_dir, rows, wakes=[])
    try:
        wake.start(timeout=60)
        assert wake.health() == SERVING  # the 100 hosts' filter is attached
        hosts = wake.stub.ListHosts(H.ListHostsRequest(page_size=1000), timeout=10).hosts
        quarantined = [h for h in hosts if h.state == H.HOST_STATE_QUARANTINED]
        assert len(hosts) == 101 and [h.name for h in quarantined] == ["hosts/h101"]
        assert "more than 100 hosts" in quarantined[0].quarantine_reason
        err = rejected(
            wake.stub.CreateHost, H.CreateHostRequest(host_id="extra", host=valid_host())
        )
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
        assert "capturing" in wake.output and "cannot watch" not in wake.output
    finally:
        wake.stop()
