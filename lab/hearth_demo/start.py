"""Start the demo house: every service's part prepared, the services started, the parts'
resources created. The parts are listed here, one module per service in this package."""

from __future__ import annotations

import contextlib
import signal
import threading

from hearth_demo import audio, ci, gateway, wake
from hearth_demo.house import PORTS, House
from hearth_lab import Lab
from hearth_runtime import ports
from hearth_runtime.ports import BACKENDS

# prepare() in this order before the services start; populate() (where a part has one) after.
PARTS = (wake, audio, ci, gateway)


def start_house(lab: Lab, env: dict[str, str] | None = None) -> House:
    """Build the house in ``lab`` and start every service; ``env`` overrides the parts'
    settings (tests use it for short timings). Stop it with :meth:`House.stop`."""
    hub = lab.add_host("hearth")
    house = House(lab=lab, hub=hub, hub_address=hub.expose())
    for part in PARTS:
        part.prepare(house)
    house.env.update(env or {})
    for name in BACKENDS:
        house.env.setdefault(
            f"HEARTH_GATEWAY_{name.upper()}_ADDRESS", f"127.0.0.1:{PORTS[name][0]}"
        )
    house.env.setdefault("HEARTH_GATEWAY_HTTP_LISTEN", f"0.0.0.0:{ports.HTTP_PORT}")
    for name in (*BACKENDS, "gateway"):
        house.start_service(name)
    for part in (wake, audio, ci):  # the gateway's part only prepares
        part.populate(house)
    return house


def build_and_run() -> None:
    with Lab(prefix="demo") as lab:
        house = start_house(lab)
        print("\nhearth demo house is up (Ctrl-C to tear it all down)\n")
        print(f"  web page       http://{house.hub_address}:{ports.HTTP_PORT}/")
        for name in ("gateway", *BACKENDS):
            print(
                f"  {name:<8} gRPC  {house.address(name)}   "
                f"metrics http://{house.hub_address}:{PORTS[name][1]}/metrics"
            )
        print(f"  logs           {lab.workdir}/*.log")
        for note in house.notes:
            print(f"  {note}")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        house.stop()
