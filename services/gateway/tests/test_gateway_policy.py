"""Authorization is declared once, in the contracts: every rpc carries a policy option.

The walk below covers every service of every ``hearth.*.v1`` proto package there is, so a
new rpc (or a new service, or a new package) without ``(hearth.auth.v1.policy)`` fails here
before the gateway's catalog refuses it at start.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

import hearth
from hearth.auth.v1 import policy_pb2
from hearth_gateway.auth import Authorizer
from hearth_gateway.catalog import _method, build_catalog
from hearth_gateway.config import GatewayConfig
from hearth_gateway.policy import OPERATOR, VIEWER, PolicyError, method_policy
from hearth_runtime import ConfigError
from hearth_runtime.ports import BACKENDS


def contract_files() -> list[descriptor.FileDescriptor]:
    """The file descriptor of every generated ``hearth.<name>.v1`` module."""
    files = []
    for found in pkgutil.walk_packages(hearth.__path__, "hearth."):
        parts = found.name.split(".")
        if len(parts) == 4 and parts[2] == "v1" and parts[3].endswith("_pb2"):
            files.append(importlib.import_module(found.name).DESCRIPTOR)
    return files


def every_rpc() -> list[descriptor.MethodDescriptor]:
    return [
        method
        for file in contract_files()
        for service in file.services_by_name.values()
        for method in service.methods
    ]


def test_the_walk_finds_every_service() -> None:
    packages = {f.package for f in contract_files() if f.services_by_name}
    assert packages >= {f"hearth.{name}.v1" for name in (*BACKENDS, "gateway")}, packages
    walked = {f"/{m.containing_service.full_name}/{m.name}" for m in every_rpc()}
    assert walked >= set(build_catalog(BACKENDS).methods)


def test_every_rpc_declares_its_policy() -> None:
    missing = []
    for method in every_rpc():
        try:
            policy = method_policy(method)
        except PolicyError as exc:
            missing.append(str(exc))
            continue
        assert policy.role in (VIEWER, OPERATOR)
    assert not missing, "\n".join(missing)


def _new_rpc(role: policy_pb2.Role.ValueType | None = None) -> descriptor.MethodDescriptor:
    """A contract with one rpc, built in a pool of its own; with a policy of ``role``."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in (descriptor_pb2.DESCRIPTOR, policy_pb2.DESCRIPTOR):
        proto = descriptor_pb2.FileDescriptorProto()
        dependency.CopyToProto(proto)
        pool.Add(proto)
    file = descriptor_pb2.FileDescriptorProto(
        name="hearth/new/v1/new.proto",
        package="hearth.new.v1",
        dependency=["hearth/auth/v1/policy.proto"],
    )
    file.message_type.add(name="Nothing")
    rpc = file.service.add(name="NewService").method.add(
        name="DoIt", input_type=".hearth.new.v1.Nothing", output_type=".hearth.new.v1.Nothing"
    )
    if role is not None:
        rpc.options.Extensions[policy_pb2.policy].role = role
    pool.Add(file)
    return pool.FindMethodByName("hearth.new.v1.NewService.DoIt")


def test_the_catalog_refuses_an_rpc_without_a_policy() -> None:
    with pytest.raises(
        PolicyError, match=re.escape("NewService/DoIt has no (hearth.auth.v1.policy)")
    ):
        _method("new", _new_rpc())


def test_the_catalog_takes_an_rpc_with_a_policy() -> None:
    assert _method("new", _new_rpc(policy_pb2.ROLE_OPERATOR)).mutating


def test_the_catalog_refuses_a_role_no_method_can_have() -> None:
    with pytest.raises(PolicyError, match=re.escape("ROLE_ANONYMOUS is not a method's role")):
        _method("new", _new_rpc(policy_pb2.ROLE_ANONYMOUS))


def test_the_catalog_reads_role_and_rate_from_the_option() -> None:
    methods = build_catalog(BACKENDS).methods
    wake = "/hearth.wake.v1.WakeService"
    assert methods[f"{wake}/WakeHost"].policy.role == OPERATOR
    assert methods[f"{wake}/WakeHost"].policy.rate == (10, 60.0)
    assert methods[f"{wake}/ListHosts"].policy.role == VIEWER
    assert methods[f"{wake}/ListHosts"].policy.rate is None
    assert methods["/hearth.gateway.v1.GatewayService/GetSystemStatus"].policy.role == VIEWER


def test_rate_limits_override_only_methods_that_exist() -> None:
    catalog = build_catalog(BACKENDS)
    wake_host = catalog.methods["/hearth.wake.v1.WakeService/WakeHost"]
    overridden = Authorizer(GatewayConfig(rate_limits={wake_host.full_name: "2/s"}), catalog)
    assert overridden.rate(wake_host) == (2, 1.0)
    assert Authorizer(GatewayConfig(), catalog).rate(wake_host) == (10, 60.0)
    with pytest.raises(
        ConfigError, match=re.escape("no such method: hearth.wake.v1.WakeService/Nap")
    ):
        Authorizer(GatewayConfig(rate_limits={"hearth.wake.v1.WakeService/Nap": "1/min"}), catalog)
