"""The wake part of `make demo`: a sleeping devbox and a laptop to wake it from.

``prepare`` adds two lab hosts and starts the sleep simulator in ``devbox``; ``populate``
registers the devbox with the running wake service over gRPC and tells the newcomer how to
wake it (ping it from the laptop, or press Wake on the web page) and put it back to sleep.
"""

from __future__ import annotations

import sys

import grpc

from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_demo.house import House
from hearth_runtime.timeconv import duration_from_seconds

RESUME_DELAY = "3"


def prepare(house: House) -> None:
    devbox = house.lab.add_host("devbox")
    house.lab.add_host("laptop")
    sim = devbox.popen(
        [sys.executable, "-m", "hearth_wake.sleepsim", "--resume-delay", RESUME_DELAY],
        log=True,
    )
    house.env.setdefault("HEARTH_WAKE_PROBE_INTERVAL", "10")
    house.notes.append(
        f"wake     put the devbox back to sleep: kill -USR1 {sim.pid}   "
        f"(simulator log: {devbox.log_path(sim)})"
    )


def populate(house: House) -> None:
    devbox, laptop = house.lab.hosts["devbox"], house.lab.hosts["laptop"]
    host = wake_pb2.Host(
        mac=devbox.mac,
        ipv4=devbox.ipv4,
        ipv6=devbox.ipv6,
        alive_timeout=duration_from_seconds(30),
        wake_timeout=duration_from_seconds(30),
        retry_interval=duration_from_seconds(2),
        cooldown=duration_from_seconds(10),
    )
    with grpc.insecure_channel(house.address("wake")) as channel:
        stub = wake_pb2_grpc.WakeServiceStub(channel)
        stub.CreateHost(wake_pb2.CreateHostRequest(host_id="devbox", host=host), timeout=10)
    house.notes.insert(
        0,
        f"wake     the devbox ({devbox.ipv4}) is asleep; wake it by asking for it: "
        f"ip netns exec {laptop.netns} ping {devbox.ipv4}   (or -6 {devbox.ipv6}, "
        "or press Wake on the web page)",
    )
