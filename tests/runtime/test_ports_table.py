"""One table of ports and backend names (hearth_runtime.ports): every default derives from
it, and the files that cannot import Python are checked against it here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hearth_audio.config import AudioConfig
from hearth_ci.config import CiConfig
from hearth_cli.client import DEFAULT_GATEWAY
from hearth_gateway.config import GatewayConfig
from hearth_runtime import ServiceConfig, ports
from hearth_runtime.ports import BACKENDS, GATEWAY, GRPC_TLS_PORT, HTTP_PORT, PORTS, SERVICES
from hearth_wake.config import WakeConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS: dict[str, type[ServiceConfig]] = {
    "gateway": GatewayConfig,
    "wake": WakeConfig,
    "audio": AudioConfig,
    "ci": CiConfig,
}
SKIP_DIRS = {".git", "gen", "target", "node_modules", ".venv", ".state"}


def _port(address: str) -> int:
    return int(address.strip().strip("\"'").rsplit(":", 1)[1])


def _files(pattern: str) -> list[Path]:
    return sorted(
        p for p in ROOT.rglob(pattern) if not SKIP_DIRS & set(p.relative_to(ROOT).parts[:-1])
    )


def test_the_table_names_every_service_once() -> None:
    assert (GATEWAY, *BACKENDS) == SERVICES
    assert set(PORTS) == set(SERVICES) == set(CONFIGS)
    numbers = [n for p in PORTS.values() for n in (p.grpc, p.metrics)] + [HTTP_PORT, GRPC_TLS_PORT]
    assert len(numbers) == len(set(numbers)), "two uses of one port"


@pytest.mark.parametrize("service", SERVICES)
def test_config_defaults_derive_from_the_table(service: str) -> None:
    config = CONFIGS[service]()
    assert _port(config.grpc_listen) == PORTS[service].grpc
    assert _port(config.metrics_listen) == PORTS[service].metrics


def test_gateway_defaults_derive_from_the_table() -> None:
    config = GatewayConfig()
    assert _port(config.http_listen) == HTTP_PORT
    assert _port(config.grpc_tls_listen) == GRPC_TLS_PORT
    backends = config.backend_addresses()
    assert tuple(backends) == BACKENDS
    assert {name: _port(a) for name, a in backends.items()} == {
        name: PORTS[name].grpc for name in BACKENDS
    }
    assert _port(ServiceConfig().grpc_listen) == PORTS[GATEWAY].grpc


def test_the_cli_calls_the_gateway_port_by_default() -> None:
    assert ports.local_address(GATEWAY, "127.0.0.1") == DEFAULT_GATEWAY


@pytest.mark.parametrize("service", SERVICES)
def test_local_configs_use_the_table(service: str) -> None:
    config = yaml.safe_load((ROOT / "config" / "local" / f"{service}.yaml").read_text())
    assert _port(config["grpc_listen"]) == PORTS[service].grpc
    assert _port(config["metrics_listen"]) == PORTS[service].metrics
    if "http_listen" in config:
        assert service == GATEWAY and _port(config["http_listen"]) == HTTP_PORT


def test_prometheus_scrapes_the_metrics_ports() -> None:
    files = _files("prometheus*.yml") + _files("lab.yml")
    scraped = 0
    for path in files:
        document = yaml.safe_load(path.read_text())
        for job in (document or {}).get("scrape_configs", []):
            if job["job_name"] not in PORTS:
                continue
            for static in job["static_configs"]:
                for target in static["targets"]:
                    assert _port(target) == PORTS[job["job_name"]].metrics, (path, target)
                    scraped += 1
    assert scraped >= len(SERVICES), "no Prometheus configuration found"


LISTEN = re.compile(
    r"HEARTH_(GATEWAY|WAKE|AUDIO|CI)_(GRPC|METRICS|HTTP|GRPC_TLS)_LISTEN[:=]\s*(\S+)"
)
PUBLISH = re.compile(r"\$\{HEARTH_(HTTP|GRPC)_PUBLISH:-(\d+)\}:(\d+)")
GATEWAY_ADDRESS = re.compile(r"HEARTH_GATEWAY:\s*(\S+)")


def _expected(service: str, kind: str) -> int:
    return {
        "GRPC": PORTS[service].grpc,
        "METRICS": PORTS[service].metrics,
        "HTTP": HTTP_PORT,
        "GRPC_TLS": GRPC_TLS_PORT,
    }[kind]


def test_compose_files_use_the_table() -> None:
    files = _files("docker-compose*.yml")
    assert files
    checked = 0
    for path in files:
        text = path.read_text()
        for service, kind, value in LISTEN.findall(text):
            if value.startswith("unix:"):
                continue
            assert _port(value) == _expected(service.lower(), kind), (path.name, service, value)
            checked += 1
        for kind, published, inside in PUBLISH.findall(text):
            want = HTTP_PORT if kind == "HTTP" else PORTS[GATEWAY].grpc
            assert int(published) == int(inside) == want, (path.name, kind)
            checked += 1
        for value in GATEWAY_ADDRESS.findall(text):
            assert _port(value) == PORTS[GATEWAY].grpc, (path.name, value)
            checked += 1
    assert checked >= 5


def _instructions(text: str) -> list[str]:
    """A Dockerfile's instructions, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if i.strip()]


def test_dockerfiles_expose_and_check_the_table_ports() -> None:
    checked = 0
    for path in _files("*Dockerfile*"):
        parts = path.relative_to(ROOT).parts
        stage = parts[1] if parts[0] == "services" and parts[1] in PORTS else ""
        for instruction in _instructions(path.read_text()):
            keyword, _, rest = instruction.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                named = re.search(r"\bAS\s+(\S+)", rest, re.IGNORECASE)
                found = [s for s in PORTS if named and s in named.group(1).lower()]
                stage = found[0] if found else stage if parts[0] == "services" else ""
            elif keyword == "EXPOSE" and stage:  # a hearth service's image (or stage)
                allowed = {PORTS[stage].grpc, PORTS[stage].metrics}
                if stage == GATEWAY:
                    allowed |= {HTTP_PORT, GRPC_TLS_PORT}
                for port in (int(p.split("/")[0]) for p in rest.split()):
                    assert port in allowed, (path, stage, port)
                    checked += 1
            elif keyword == "HEALTHCHECK":
                for service, kind, _ in LISTEN.findall(rest.replace('"', "")):
                    addresses = re.findall(r"127\.0\.0\.1:(\d+)", rest)
                    assert addresses, (path, instruction)
                    for port in addresses:
                        assert int(port) == _expected(service.lower(), kind), (path, port)
                        checked += 1
    assert checked >= len(SERVICES)
