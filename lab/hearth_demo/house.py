"""The demo house: one lab, one always-on "hearth" box running the services."""

from __future__ import annotations

from dataclasses import dataclass, field

from hearth_lab import Host, Lab
from hearth_runtime import ports
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


def _service_env(house: House, service: str) -> dict[str, str]:
    grpc_port, metrics_port = PORTS[service]
    prefix = f"HEARTH_{service.upper()}_"
    env = {
        prefix + "GRPC_LISTEN": f"0.0.0.0:{grpc_port}",
        prefix + "METRICS_LISTEN": f"0.0.0.0:{metrics_port}",
        prefix + "STATE_DIR": str(house.lab.workdir / "state" / service),
    }
    return {**env, **{k: v for k, v in house.env.items() if k.startswith(prefix)}}
