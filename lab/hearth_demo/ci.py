"""The ci part of `make demo`: the replay server stands in for Zuul and Gerrit inside the
house's hub, the ci service polls it, and a default watch shows real queues at once."""

from __future__ import annotations

import sys

import grpc

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci_lab.replay import default_fixtures, wait_until_up
from hearth_demo.house import House

REPLAY_PORT = 8081
USER, PASSWORD = "danms", "secret"
WATCH_ID = "mine"


def prepare(house: House) -> None:
    """Start the replay server in the hub and point the ci service at it."""
    house.hub.popen(
        [sys.executable, "-m", "hearth_ci_lab.replay", "--fixtures", str(default_fixtures()),
         "--listen", f"0.0.0.0:{REPLAY_PORT}", "--user", USER, "--password", PASSWORD],
        log=True,
    )  # fmt: skip
    url = f"http://{house.hub_address}:{REPLAY_PORT}"
    wait_until_up(url, within=20)
    local = f"http://127.0.0.1:{REPLAY_PORT}"  # the ci service runs in the hub too
    house.env.update(
        {
            "HEARTH_CI_ZUUL_URL": local,
            "HEARTH_CI_ZUUL_TENANT": "openstack",
            "HEARTH_CI_GERRIT_URL": local,
            "HEARTH_CI_GERRIT_USER": USER,
            "HEARTH_CI_GERRIT_PASSWORD": PASSWORD,
            # The replay stand-in speaks plain http on loopback.
            "HEARTH_CI_ALLOW_INSECURE_AUTH": "true",
            "HEARTH_CI_DEFAULT_REFRESH_SECONDS": "10",
        }
    )
    house.notes.append(
        f"ci replay      Zuul+Gerrit stand-in at {url} (faults: POST {url}/_control)"
    )


def populate(house: House) -> None:
    """A default watch: danms's changes, OR starred by danms, OR in openstack/nova."""
    address = house.address("ci")
    watch = ci_pb2.Watch(
        display_name="danms's changes, stars and nova",
        filter=ci_pb2.Filter(user=USER, owners=[USER], starred=True, projects=["openstack/nova"]),
    )
    watch.refresh_interval.FromSeconds(10)
    with grpc.insecure_channel(address) as channel:
        stub = ci_pb2_grpc.CiServiceStub(channel)
        try:
            stub.CreateWatch(ci_pb2.CreateWatchRequest(watch_id=WATCH_ID, watch=watch), timeout=10)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        dash = stub.GetDashboard(
            ci_pb2.GetDashboardRequest(watch=f"watches/{WATCH_ID}"), timeout=30
        )
    house.notes.append(
        f"ci dashboard   {sys.executable} -m hearth_ci.dash --service {address} "
        f"--watch {WATCH_ID}   ({dash.matching_items} matching items now)"
    )
