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
from typing import Any

import pytest
import yaml

from hearth_compose.stack import REPO, StackError, compose_command

DASHBOARD_UIDS = {"hearth-wake", "hearth-audio", "hearth-ci", "hearth-gateway"}


def _compose_config(path: Path, *options: str) -> tuple[dict[str, Any], str]:
    try:
        compose = compose_command()
    except StackError as exc:
        pytest.skip(str(exc))
    # No .env of the developer's: the defaults must make a complete, warning-free config.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    res = subprocess.run(
        [*compose, *options, "-f", str(path), "--project-directory", str(REPO), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout), res.stderr


def test_production_compose_is_valid_without_warnings() -> None:
    config, warnings = _compose_config(REPO / "docker-compose.yml")
    assert warnings.strip() == ""
    services = config["services"]
    assert set(services) == {
        "gateway", "wake", "audio", "station", "ci", "prometheus", "grafana",
    }  # fmt: skip
    for name in ("wake", "audio", "station"):
        assert services[name]["network_mode"] == "host", name
    assert services["wake"]["cap_drop"] == ["ALL"]
    assert sorted(services["wake"]["cap_add"]) == ["NET_ADMIN", "NET_RAW"]
    assert {p["target"] for p in _ports(services["gateway"])} == {8080, 50051}
    for name in ("gateway", "wake", "audio", "ci"):
        sources = {t: s for s, t in map(_volume, services[name]["volumes"])}
        assert sources.get(f"/var/lib/hearth/{name}") in config["volumes"], name
    assert "prometheus-data" in config["volumes"] and "grafana-data" in config["volumes"]


def test_env_example_explains_every_setting_of_the_production_compose() -> None:
    example = REPO / ".env.example"
    used = set(re.findall(r"\$\{(HEARTH_[A-Z0-9_]+)", (REPO / "docker-compose.yml").read_text()))
    explained = set(re.findall(r"^(HEARTH_[A-Z0-9_]+)=", example.read_text(), re.MULTILINE))
    assert used == explained
    _, warnings = _compose_config(REPO / "docker-compose.yml", "--env-file", str(example))
    assert warnings.strip() == ""


def _volume(volume: str | dict[str, Any]) -> tuple[str, str]:
    """(source, target) of a volume as compose v1 (a string) or v2 (a mapping) prints it."""
    if isinstance(volume, dict):
        return str(volume.get("source", "")), str(volume["target"])
    source, target = volume.split(":")[:2]
    return source, target


def _ports(service: dict[str, Any]) -> list[dict[str, Any]]:
    ports = service.get("ports", [])
    # Compose v1 prints "published:target" strings, v2 mappings.
    return [p if isinstance(p, dict) else {"target": int(str(p).rsplit(":", 1)[-1])} for p in ports]


def test_lab_compose_is_private() -> None:
    config, warnings = _compose_config(REPO / "docker-compose.lab.yml")
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


def test_python_images_share_one_build_stage() -> None:
    """Docker builds the stage once for every image only while the text is the same."""
    files = [*sorted((REPO / "services").glob("*/Dockerfile")), REPO / "docker/labhost/Dockerfile"]
    assert len(files) == 5
    stages = {}
    for path in files:
        text = path.read_text()
        start = text.index("FROM ${BASE_IMAGE} AS build")
        stage = text[start : text.index("\nFROM ", start)].splitlines()
        # Comments do not count for Docker's cache.
        stages[path.parent.name] = "\n".join(line for line in stage if not line.startswith("#"))
    assert len(set(stages.values())) == 1, sorted(stages)
