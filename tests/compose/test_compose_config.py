"""The compose files, Prometheus rules and Grafana provisioning, checked without starting
anything: `docker compose config` on the production file, promtool on the rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any, NamedTuple

import pytest
import yaml

from hearth_compose.stack import REPO, StackError, compose_command

PRODUCT_IMAGES = ["wake", "audio", "ci", "gateway"]
LAB_IMAGES = ["labhost", "station", "zone"]

DASHBOARD_UIDS = {"hearth-wake", "hearth-audio", "hearth-ci", "hearth-gateway"}


PRODUCTION = REPO / "docker-compose.yml"
LAB = REPO / "docker-compose.lab.yml"
# The one setting without a default (a password the user chose); any value will do here.
PASSWORD = {"HEARTH_GRAFANA_ADMIN_PASSWORD": "a-password-of-the-test"}
BACKENDS = {"wake": 50061, "audio": 50062, "ci": 50063}
SOCKETS = "/run/hearth"


def _run_compose_config(path: Path, *options: str, env: dict[str, str]) -> CompletedProcess[str]:
    try:
        compose = compose_command()
    except StackError as exc:
        pytest.skip(str(exc))
    # No .env of the developer's: only the defaults and what the test sets.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    return subprocess.run(
        [*compose, *options, "-f", str(path), "--project-directory", str(REPO), "config"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd="/",
        check=False,
    )


def _compose_config(
    path: Path, *options: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    res = _run_compose_config(path, *options, env=PASSWORD if env is None else env)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout), res.stderr


def test_production_compose_is_valid_without_warnings() -> None:
    config, warnings = _compose_config(PRODUCTION)
    assert warnings.strip() == ""
    services = config["services"]
    assert set(services) == {
        "gateway", "wake", "audio", "station", "ci", "prometheus", "grafana",
    }  # fmt: skip
    for name in ("wake", "audio", "station"):
        assert services[name]["network_mode"] == "host", name
    assert services["wake"]["cap_drop"] == ["ALL"]
    assert sorted(services["wake"]["cap_add"]) == ["NET_ADMIN", "NET_RAW"]
    assert {p.target for p in _ports(services["gateway"])} == {8080, 50051}
    for name in ("gateway", "wake", "audio", "ci"):
        sources = {t: s for s, t in map(_volume, services[name]["volumes"])}
        assert sources.get(f"/var/lib/hearth/{name}") in config["volumes"], name
    assert "prometheus-data" in config["volumes"] and "grafana-data" in config["volumes"]


def test_env_example_explains_every_setting_of_the_production_compose() -> None:
    example = REPO / ".env.example"
    used = set(re.findall(r"\$\{(HEARTH_[A-Z0-9_]+)", PRODUCTION.read_text()))
    explained = set(re.findall(r"^(HEARTH_[A-Z0-9_]+)=", example.read_text(), re.MULTILINE))
    assert used == explained
    # Copied as it is, the example does not start: it has no Grafana password.
    res = _run_compose_config(PRODUCTION, "--env-file", str(example), env={})
    assert res.returncode != 0 and "set HEARTH_GRAFANA_ADMIN_PASSWORD in .env" in res.stderr
    # With one (the environment wins over the file), the example's values are complete.
    _, warnings = _compose_config(PRODUCTION, "--env-file", str(example))
    assert warnings.strip() == ""


@pytest.mark.parametrize("password", [None, ""])
def test_compose_refuses_to_start_without_a_grafana_password(password: str | None) -> None:
    env = {} if password is None else {"HEARTH_GRAFANA_ADMIN_PASSWORD": password}
    res = _run_compose_config(PRODUCTION, env=env)
    assert res.returncode != 0, res.stdout
    assert "set HEARTH_GRAFANA_ADMIN_PASSWORD in .env" in res.stderr


def test_grafana_listens_on_loopback_with_only_the_chosen_password() -> None:
    config, _ = _compose_config(PRODUCTION)
    grafana = config["services"]["grafana"]
    assert [(p.host_ip, p.published, p.target) for p in _ports(grafana)] == [
        ("127.0.0.1", 3000, 3000)
    ]
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == PASSWORD["HEARTH_GRAFANA_ADMIN_PASSWORD"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    # No default password anywhere: not in the compose file (a required variable), not in
    # the example (empty), not in Grafana's provisioning.
    assert re.search(
        r"GF_SECURITY_ADMIN_PASSWORD: \"\$\{HEARTH_GRAFANA_ADMIN_PASSWORD:\?[^}]*\}\"",
        PRODUCTION.read_text(),
    )
    example = (REPO / ".env.example").read_text()
    assert re.findall(r"(?m)^HEARTH_GRAFANA_ADMIN_PASSWORD=(.*)$", example) == [""]
    for path in REPO.glob("grafana/**/*"):
        if path.is_file():
            assert "password" not in path.read_text().lower(), path


def test_production_publishes_only_the_gateway_and_loopback_pages() -> None:
    config, _ = _compose_config(PRODUCTION)
    published = {
        name: sorted((p.host_ip, p.published) for p in _ports(service))
        for name, service in config["services"].items()
        if service.get("ports")
    }
    # The gateway is the one door for the house (it asks for tokens); Grafana and Prometheus
    # are this machine's only.
    assert published == {
        "gateway": [("", 8080), ("", 50051)],
        "grafana": [("127.0.0.1", 3000)],
        "prometheus": [("127.0.0.1", 9090)],
    }


def _backend_env(config: dict[str, Any], name: str) -> dict[str, str]:
    return {k: str(v) for k, v in config["services"][name]["environment"].items()}


@pytest.mark.parametrize("path", [PRODUCTION, LAB], ids=["production", "lab"])
def test_backends_serve_grpc_only_on_sockets_only_the_gateway_mounts(path: Path) -> None:
    config, _ = _compose_config(path)
    services = config["services"]
    gateway = _backend_env(config, "gateway")
    for name in BACKENDS:
        env = _backend_env(config, name)
        socket = f"unix:{SOCKETS}/{name}.sock"
        # Set explicitly: a service's default is a TCP listen on every address.
        assert env[f"HEARTH_{name.upper()}_GRPC_LISTEN"] == socket, name
        assert gateway[f"HEARTH_GATEWAY_{name.upper()}_ADDRESS"] == socket, name
        assert not services[name].get("ports"), name
        # Metrics stay TCP; on the host's network never on a wildcard (that is the LAN).
        metrics = env.get(f"HEARTH_{name.upper()}_METRICS_LISTEN", "0.0.0.0:")
        if services[name].get("network_mode") == "host":
            assert metrics.rpartition(":")[0] not in {"", "0.0.0.0", "[::]", "::"}, name
        assert not metrics.startswith("unix:"), name
    # No listen of any service on a backend's gRPC port.
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if key.endswith("_LISTEN"):
                assert not str(value).endswith(tuple(f":{p}" for p in BACKENDS.values())), key
    # The sockets' volume: mounted by the backends and, read-only, by the gateway; nobody else.
    mounts = {
        name: [m for s, t, m in map(_mount, service.get("volumes", [])) if s == "sockets"]
        for name, service in services.items()
    }
    assert {n: m for n, m in mounts.items() if m} == {
        "gateway": ["ro"], "wake": ["rw"], "audio": ["rw"], "ci": ["rw"],
    }  # fmt: skip
    for name in ("gateway", *BACKENDS):
        assert {t for s, t, _ in map(_mount, services[name]["volumes"]) if s == "sockets"} == {
            SOCKETS
        }
    # In memory, entered only by uid 10001 (the images' hearth user: audio, ci, the gateway)
    # and gid 10001, the sockets' group: wake (root) runs in it, the gateway joins it (each
    # socket is 0660, see hearth_runtime.server._bind).
    options = config["volumes"]["sockets"]["driver_opts"]
    assert options["type"] == "tmpfs"
    assert set(options["o"].split(",")) >= {"uid=10001", "gid=10001", "mode=0770"}
    assert str(services["wake"]["user"]) == "0:10001"
    assert [str(g) for g in services["gateway"]["group_add"]] == ["10001"]


def _mount(volume: str | dict[str, Any]) -> tuple[str, str, str]:
    """(source, target, "ro"/"rw") of a volume as compose v1 (a string) or v2 (a mapping)
    prints it."""
    if isinstance(volume, dict):
        mode = "ro" if volume.get("read_only") else "rw"
        return str(volume.get("source", "")), str(volume["target"]), mode
    source, target, *rest = volume.split(":")
    return source, target, "ro" if rest and "ro" in rest[0].split(",") else "rw"


def _volume(volume: str | dict[str, Any]) -> tuple[str, str]:
    source, target, _ = _mount(volume)
    return source, target


class Port(NamedTuple):
    host_ip: str
    """"" for every interface of the host."""
    published: int
    target: int


def _ports(service: dict[str, Any]) -> list[Port]:
    """Compose v1 prints "[ip:]published:target[/proto]" strings or mappings, v2 mappings."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            target = int(port["target"])
            published = int(port.get("published") or target)
            out.append(Port(str(port.get("host_ip") or ""), published, target))
            continue
        parts = str(port).split("/")[0].split(":")
        target = int(parts[-1])
        published = int(parts[-2]) if len(parts) > 1 else target
        out.append(Port(":".join(parts[:-2]), published, target))
    return out


def test_lab_compose_is_private() -> None:
    config, warnings = _compose_config(LAB)
    assert warnings.strip() == ""
    assert config["networks"]["lan"]["internal"] is True
    for name, service in config["services"].items():
        assert "network_mode" not in service, f"{name} must stay on the lab network"
        assert not service.get("ports"), f"{name} must publish nothing"
        assert list(service["networks"]) == ["lan"], name


def test_alert_rules_load_and_fire_in_promtool_unit_tests() -> None:
    if not shutil.which("promtool"):
        pytest.skip("promtool is missing (Debian package prometheus: make install)")
    rules = sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    check = subprocess.run(
        ["promtool", "check", "rules", *map(str, rules)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = sorted((REPO / "prometheus" / "tests").glob("*.yml"))
    unit = subprocess.run(
        ["promtool", "test", "rules", *map(str, tests)], capture_output=True, text=True
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
    for config in ("prometheus.yml", "lab.yml"):
        res = subprocess.run(
            ["promtool", "check", "config", "--syntax-only", str(REPO / "prometheus" / config)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout + res.stderr


def test_dashboards_are_generated_and_use_the_provisioned_datasource() -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    provisioning = REPO / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    dashboards = [json.loads(p.read_text()) for p in (REPO / "grafana/dashboards").glob("*.json")]
    assert {d["uid"] for d in dashboards} == DASHBOARD_UIDS
    for dashboard in dashboards:
        assert dashboard["panels"], dashboard["uid"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == uid
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])
    provider = yaml.safe_load((provisioning / "dashboards" / "hearth.yml").read_text())
    assert provider["providers"][0]["editable"] is False


def _stages() -> dict[str, str]:
    """The root Dockerfile's stages: name -> instructions (from its FROM to the next FROM)."""
    lines = (REPO / "Dockerfile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.startswith("#"))
    parts = re.split(r"^(?=FROM )", text, flags=re.M)[1:]
    return {re.match(r"FROM \S+ AS (\S+)", part).group(1): part for part in parts}  # type: ignore[union-attr]


def test_one_dockerfile_builds_every_image_from_one_build_stage() -> None:
    """One Dockerfile, a target per image of scripts/build-images.sh and of the compose
    files; one build stage; product images take only the product's virtualenv."""
    tracked = subprocess.run(
        ["git", "ls-files", "*Dockerfile"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    # Besides it only the stand-ins for base images when no registry can provide them.
    assert sorted(tracked) == [
        "Dockerfile",
        "docker/base/python.Dockerfile",
        "docker/prometheus/Dockerfile",
    ]
    stages = _stages()
    table = (REPO / "scripts" / "build-images.sh").read_text()
    built = dict(re.findall(r'^  "(\w+)\|Dockerfile\|(\w+)"$', table, flags=re.M))
    assert built == {name: name for name in PRODUCT_IMAGES + LAB_IMAGES}
    assert set(built) <= set(stages)
    for file in ("docker-compose.yml",):
        services = yaml.safe_load((REPO / file).read_text())["services"]
        for name, service in services.items():
            if "build" in service:
                assert service["build"] == {"context": ".", "target": name}, name
    assert [n for n, s in stages.items() if "pip wheel" in s and "gen_protos" in s] == ["build"]
    assert "COPY lab" not in stages["build"]  # the lab is added in build-lab only
    for name in PRODUCT_IMAGES:
        assert "COPY --from=build /opt/hearth /opt/hearth" in stages[name], name
        assert "build-lab" not in stages[name], name
    assert "COPY --from=build-lab /opt/hearth /opt/hearth" in stages["labhost"]
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in (REPO / "Dockerfile").read_text()
