# ruff: noqa: F811  (fixtures come from hearth_ci.testkit; tests take them as arguments)
"""The ci part of `make demo` in a lab: replay server in the hub, service polling it,
default watch with real queues."""

from __future__ import annotations

import grpc

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci import demo
from hearth_demo.house import House, _service_env
from hearth_lab import Lab
from hearth_lab.pytest_plugin import lab  # noqa: F401  # the lab fixture
from hearth_testing import ServiceProcess


def test_demo_part_shows_real_queues(lab: Lab) -> None:
    hub = lab.add_host("hearth")
    house = House(lab=lab, hub=hub, hub_address=hub.expose())
    demo.prepare(house)
    assert house.env["HEARTH_CI_ZUUL_URL"] == "http://127.0.0.1:8081"
    with ServiceProcess(
        "ci", env=_service_env(house, "ci"), prefix=["ip", "netns", "exec", hub.netns]
    ) as proc:
        house.services["ci"] = proc
        demo.populate(house)
        with grpc.insecure_channel(house.address("ci")) as channel:
            stub = ci_pb2_grpc.CiServiceStub(channel)
            dash = stub.GetDashboard(ci_pb2.GetDashboardRequest(watch="watches/mine"), timeout=10)
    assert dash.zuul.api_generation == ci_pb2.ZUUL_API_GENERATION_V3 and all(
        s.ok for s in dash.sources
    )
    gate = next(p for p in dash.pipelines if p.name == "gate")
    assert gate.queues[0].total == 30 and len(gate.queues[0].items) >= 10
    assert any("--watch mine" in note for note in house.notes)
