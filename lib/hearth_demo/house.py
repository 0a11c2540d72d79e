"""The demo house: one lab, one always-on "hearth" box running the services."""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from dataclasses import dataclass, field
from types import ModuleType

from hearth_lab import Host, Lab
from hearth_runtime import ports
from hearth_runtime.ports import BACKENDS
from hearth_testing import ServiceProcess

PORTS = {name: (p.grpc, p.metrics) for name, p in ports.PORTS.items()}


@dataclass
class House:
    lab: Lab
    hub: Host
    hub_address: str
    env: dict[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def address(self, service: str) -> str:
        """gRPC address of a running service, reachable from this (root) namespace."""
        return f"{self.hub_address}:{PORTS[service][0]}"

    def start_service(self, name: str) -> ServiceProcess:
        """Start (or start again, after ``services[name].stop()``) one service in the hub."""
        proc = ServiceProcess(
            name,
            env=_service_env(self, name),
            prefix=["ip", "netns", "exec", self.hub.netns],
            log_path=self.lab.workdir / f"{name}.log",
        )
        self.services[name] = proc.start(timeout=60)
        return proc

    def stop(self) -> None:
        for proc in reversed(list(self.services.values())):
            proc.stop()


def _part(service: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"hearth_{service}.demo")
    except ModuleNotFoundError as exc:
        if exc.name == f"hearth_{service}.demo":
            return None
        raise


def _service_env(house: House, service: str) -> dict[str, str]:
    grpc_port, metrics_port = PORTS[service]
    prefix = f"HEARTH_{service.upper()}_"
    env = {
        prefix + "GRPC_LISTEN": f"0.0.0.0:{grpc_port}",
        prefix + "METRICS_LISTEN": f"0.0.0.0:{metrics_port}",
        prefix + "STATE_DIR": str(house.lab.workdir / "state" / service),
    }
    return {**env, **{k: v for k, v in house.env.items() if k.startswith(prefix)}}


def start_house(lab: Lab, env: dict[str, str] | None = None) -> House:
    """Build the house in ``lab`` and start every service; ``env`` overrides the parts'
    settings (tests use it for short timings). Stop it with :meth:`House.stop`."""
    hub = lab.add_host("hearth")
    house = House(lab=lab, hub=hub, hub_address=hub.expose())
    parts = {name: _part(name) for name in (*BACKENDS, "gateway")}
    for part in parts.values():
        if part and hasattr(part, "prepare"):
            part.prepare(house)
    house.env.update(env or {})
    for name in BACKENDS:
        house.env.setdefault(
            f"HEARTH_GATEWAY_{name.upper()}_ADDRESS", f"127.0.0.1:{PORTS[name][0]}"
        )
    house.env.setdefault("HEARTH_GATEWAY_HTTP_LISTEN", f"0.0.0.0:{ports.HTTP_PORT}")
    for name in (*BACKENDS, "gateway"):
        house.start_service(name)
    for part in parts.values():
        if part and hasattr(part, "populate"):
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
