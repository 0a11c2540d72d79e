"""Issue 11: what a client or a stored row can do to hearth-wake must never take it down.

Every test runs hearth-wake as a real process in a private network namespace (loopback and
a veth pair whose two ends are both inside it; see ``labtools.private_net_prefix``): what
it sends never reaches this machine's interfaces. The API is reached over a Unix socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from hearth.wake.v1 import wake_pb2
from hearth_wake.labtools import PrivateWake, private_net_prefix

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
