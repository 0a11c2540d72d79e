"""Pure functions of the wake service: magic packets, address parsing, frame decoding."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError
from scapy.arch.common import compile_filter
from scapy.data import DLT_EN10MB
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from hearth_runtime import InvalidArgument
from hearth_wake import frames
from hearth_wake.addr import RequesterSet, parse_ipv4, parse_ipv6, parse_mac, parse_secureon
from hearth_wake.config import WakeConfig
from hearth_wake.hosts import HostSpec, check_interface_name
from hearth_wake.magic import find_magic, magic_payload, password_ok
from hearth_wake.sender import Method
from hearth_wake.sniffer import bpf_expression, check_host_filter
from hearth_wake_lab.sleepsim import classify

MAC = bytes.fromhex("020000000001")


def test_magic_payload_layout_and_password() -> None:
    payload = magic_payload(MAC, b"\x01\x02\x03\x04")
    assert len(payload) == 6 + 16 * 6 + 4 and payload[:6] == b"\xff" * 6
    assert payload[6:102] == MAC * 16
    trailer = find_magic(b"junk" + payload, MAC)
    assert trailer == b"\x01\x02\x03\x04"
    assert password_ok(trailer, b"\x01\x02\x03\x04") and not password_ok(trailer, b"\x09" * 4)
    assert find_magic(payload, bytes.fromhex("020000000002")) is None
    with pytest.raises(ValueError):
        magic_payload(MAC, b"\x01\x02\x03")


def test_sleepsim_recognises_udp_and_ethertype_magic() -> None:
    udp = bytes.fromhex(
        "ffffffffffff0200000000090800450000820000400040110000c6120001c61200ff0009000900000000"
    )
    assert classify(udp + magic_payload(MAC), MAC) == ("udp9", b"")
    raw = b"\xff" * 6 + MAC + b"\x08\x42" + magic_payload(MAC)
    assert classify(raw, MAC) == ("0x0842", b"")
    assert classify(raw[:30], MAC) is None


def test_addresses_are_validated_naming_the_field() -> None:
    assert parse_mac("m", "02-AA-bb-00-00-01") == "02:aa:bb:00:00:01"
    for bad in ("02:aa:bb:00:00", "01:00:5e:00:00:01", "xx"):
        with pytest.raises(InvalidArgument) as info:
            parse_mac("host.mac", bad)
        assert info.value.field == "host.mac"
    assert parse_secureon("p", "aa:bb:cc:dd:ee:ff") == bytes.fromhex("aabbccddeeff")
    with pytest.raises(InvalidArgument):
        parse_secureon("p", "aa:bb:cc")
    allowed = RequesterSet.parse("only_from", ["02:00:00:00:00:05", "10.1.0.0/16", "fd00::1"])
    assert allowed.matches("02:00:00:00:00:05", "192.0.2.1")
    assert allowed.matches("02:00:00:00:00:09", "10.1.2.3")
    assert allowed.matches("02:00:00:00:00:09", "fd00::1")
    assert not allowed.matches("02:00:00:00:00:09", "10.2.0.1")
    with pytest.raises(InvalidArgument) as info:
        RequesterSet.parse("only_from", ["10.0.0.0/8", "10.0.0.0/40"])
    assert info.value.field == "only_from[1]"


def test_frames_decode_arp_ns_and_vlan() -> None:
    req = Ether(src="02:00:00:00:00:05", dst="ff:ff:ff:ff:ff:ff") / ARP(
        psrc="198.18.0.5", pdst="198.18.0.9"
    )
    got = frames.decode(bytes(req))
    assert got is not None and got.kind is frames.Kind.ARP_REQUEST
    assert (got.sender_ip, got.target_ip) == ("198.18.0.5", "198.18.0.9")
    tagged = frames.decode(bytes(Ether() / Dot1Q(vlan=5) / ARP(op=2, pdst="198.18.0.9")))
    assert tagged is not None and tagged.kind is frames.Kind.ARP_REPLY
    ns = frames.decode(bytes(Ether() / IPv6(src="fd00::5") / ICMPv6ND_NS(tgt="fd00::9")))
    assert ns is not None and ns.kind is frames.Kind.NEIGHBOR_SOLICIT
    assert (ns.sender_ip, ns.target_ip) == ("fd00::5", "fd00::9")
    for broken in (b"", bytes(req)[:20], bytes(req)[:14] + b"\x00" * 28):
        assert frames.decode(broken) is None
    built = frames.arp_request(MAC, "198.18.0.1", b"\xff" * 6, "198.18.0.9")
    parsed = Ether(built)
    assert parsed[ARP].pdst == "198.18.0.9" and parsed.src == "02:00:00:00:00:01"
    assert frames.solicited_node_mac("fd00::1:2:3") == bytes.fromhex("3333ff020003")


def test_send_methods_parse_by_label_or_name() -> None:
    assert Method.parse("udp9") is Method.UDP9_SUBNET_BROADCAST
    assert Method.parse("ETHERTYPE_0842") is Method.ETHERTYPE_0842
    with pytest.raises(ValueError, match="udp9"):
        Method.parse("carrier-pigeon")


def test_bpf_expressions_compile() -> None:
    specs = [
        HostSpec(id="a", mac="02:00:00:00:00:01", ipv4="198.18.0.9", interface="lo"),
        HostSpec(
            id="b", mac="02:00:00:00:00:02", ipv4="198.18.0.10", ipv6="fd00::a", interface="lo"
        ),
    ]
    expr = bpf_expression(specs)
    assert "arp[24:4] = 0xc6120009" in expr and "ip6[40] = 135" in expr
    for expression in (expr, bpf_expression([])):
        program = compile_filter(expression, linktype=DLT_EN10MB)
        assert program.bf_len > 0


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (parse_ipv6, "fe80::1%eth0"),
        (parse_ipv6, "fd00::1%2"),
        (parse_ipv6, "::ffff:198.18.0.9"),
        (parse_ipv6, "::1"),
        (parse_ipv6, "ff02::1"),
        (parse_ipv6, "f" * 46),
        (parse_ipv4, "127.0.0.1"),
        (parse_ipv4, "0.1.2.3"),
        (parse_ipv4, "240.0.0.1"),
        (parse_ipv4, "255.255.255.255"),
        (parse_mac, "00:00:00:00:00:00"),
        (parse_mac, "02:00:00:00:00:01" * 2),
    ],
)
def test_unusable_addresses_are_rejected(parse: Callable[[str, str], object], value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse("host.x", value)
    assert info.value.field == "host.x"


def test_usable_addresses_are_normalised() -> None:
    assert parse_ipv6("f", "FE80::0:1") == "fe80::1"  # link-local: scoped by the interface
    assert parse_ipv4("f", " 169.254.0.9 ") == "169.254.0.9"


@pytest.mark.parametrize(
    "name", ["", "a" * 16, ".", "..", "a/b", "eth0:1", "eth 0", "\u00e9", "e\t"]
)
def test_interface_names_follow_linux_rules(name: str) -> None:
    with pytest.raises(InvalidArgument):
        check_interface_name("host.interface", name)


def test_interface_names_accepted() -> None:
    for name in ("eth0", "a" * 15, "br-lan.100", "wlp2s0", "veth_x@y"):
        assert check_interface_name("host.interface", name) == name


def test_requester_lists_are_bounded() -> None:
    for entries, field in [
        (["10.0.0.1"] * 65, "only_from"),
        (["224.0.0.0/4"], "only_from[0]"),
        (["fe80::1%eth0"], "only_from[0]"),
        (["1" * 65], "only_from[0]"),
    ]:
        with pytest.raises(InvalidArgument) as info:
            RequesterSet.parse("only_from", entries)
        assert info.value.field == field


def test_a_host_whose_filter_would_not_compile_is_refused() -> None:
    # Built without validation, as a stored row once was: the filter check is the last line.
    scoped = HostSpec(
        id="a", mac="02:00:00:00:00:01", ipv4="198.18.0.9", ipv6="fe80::1%eth0", interface="lo"
    )
    with pytest.raises(ValueError, match="kernel filter"):
        check_host_filter(scoped)
    check_host_filter(replace(scoped, ipv6="fe80::1"))


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("probe_interval", 1e-9),
        ("probe_interval", float("nan")),
        ("unknown_timeout", float("inf")),
        ("followup_window", 0.0),
        ("wake_grace", -1.0),
        ("wake_grace", 1e9),
    ],
)
def test_engine_settings_are_bounded(setting: str, value: float) -> None:
    with pytest.raises(ValidationError) as info:
        WakeConfig(**{setting: value})  # type: ignore[arg-type]
    assert setting in str(info.value)


def test_state_stored_by_the_version_before_the_enum_prefixes_loads(tmp_path: Path) -> None:
    """The database keeps the engine's own words ("arp", "woke", "udp9", "config") and the
    send methods' numbers, never proto enum names: rows written before the enum values got
    their prefixes (and before origin, verdict and wake methods were enums) load, and come
    out with the new enum values."""
    from hearth.wake.v1 import wake_pb2
    from hearth_wake.loading import Quarantined
    from hearth_wake.repo import Repository
    from hearth_wake.views import wake_proto

    repo = Repository(tmp_path / "wake.sqlite")
    host = {
        "mac": "02:00:00:00:00:01", "ipv4": "198.18.0.9", "ipv6": "", "interface": "",
        "methods": [2, 1], "password": "", "only_from": [], "ignore_from": [],
        "alive_timeout": 90.0, "wake_timeout": 60.0, "retry_interval": 2.0, "cooldown": 30.0,
        "origin": "config",
    }  # fmt: skip
    wake = {
        "id": 7, "host": "nas", "trigger": "arp", "requester_mac": "02:00:00:00:00:02",
        "requester_ip": "198.18.0.2", "demand_time": 1.8e9, "first_packet_time": 1.8e9 + 0.01,
        "alive_time": 1.8e9 + 5, "outcome": "woke", "packets_sent": 4, "extra_demands": 1,
        "followed_up": True, "methods": ["udp9", "0x0842"],
    }  # fmt: skip
    broken = {**host, "mac": "not a mac"}
    rows = [("nas", json.dumps(host)), ("bad", json.dumps(broken))]
    for host_id, data in rows:
        repo.store.execute(
            "INSERT INTO hosts (id, data, create_time, update_time) VALUES (?, ?, 1, 2)",
            (host_id, data),
        )
    repo.store.execute(
        "INSERT INTO wakes (id, host, data) VALUES (7, 'nas', ?)", (json.dumps(wake),)
    )
    try:
        loaded = {h.id: h for h in repo.hosts()}
        good, bad = loaded["nas"], loaded["bad"]
        assert isinstance(good, HostSpec) and isinstance(bad, Quarantined)
        msg = good.to_proto()
        assert msg.origin == wake_pb2.HOST_ORIGIN_CONFIG
        assert list(msg.send_methods) == [
            wake_pb2.SEND_METHOD_UDP9_SUBNET_BROADCAST,
            wake_pb2.SEND_METHOD_ETHERTYPE_0842,
        ]
        quarantined = bad.to_proto()
        assert quarantined.state == wake_pb2.HOST_STATE_QUARANTINED
        assert quarantined.origin == wake_pb2.HOST_ORIGIN_CONFIG
        [record] = repo.wakes("nas")
        out = wake_proto(record)
        assert out.trigger == wake_pb2.WAKE_TRIGGER_ARP
        assert out.outcome == wake_pb2.WAKE_OUTCOME_WOKE
        assert list(out.methods) == [
            wake_pb2.SEND_METHOD_UDP9_SUBNET_BROADCAST,
            wake_pb2.SEND_METHOD_ETHERTYPE_0842,
        ]
        assert out.packets_sent == 4 and out.followed_up
    finally:
        repo.close()


def test_send_methods_parse_with_the_enum_prefix() -> None:
    assert Method.parse("SEND_METHOD_UDP9_UNICAST") is Method.UDP9_UNICAST
    assert Method.parse("send_method_ethertype_0842") is Method.ETHERTYPE_0842


def test_every_verdict_and_method_has_its_enum_value() -> None:
    """The engine's verdict words (the demands metric's label) and send method labels map
    one to one onto DemandVerdict and SendMethod."""
    from hearth.wake.v1 import wake_pb2
    from hearth_wake.engine import Verdict
    from hearth_wake.views import METHODS, VERDICTS

    named = {wake_pb2.DemandVerdict.Name(VERDICTS[v.value]) for v in Verdict}
    assert named == {d.name for d in wake_pb2.DemandVerdict.DESCRIPTOR.values if d.number}
    assert VERDICTS["in_progress"] == wake_pb2.DEMAND_VERDICT_IN_PROGRESS
    assert sorted(METHODS.values()) == [
        v for v in wake_pb2.SendMethod.values() if v != wake_pb2.SEND_METHOD_UNSPECIFIED
    ]
