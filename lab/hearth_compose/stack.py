"""Drive the lab stack (docker-compose.lab.yml): up, wait for health, exec, down, sweep.

The stack runs on one internal Docker network (no route out, nothing published). The host
reaches the gateway and Prometheus at their fixed addresses on that network's bridge. Docker
drops multicast on internal networks (its isolation rule drops destinations outside the
subnet), so :meth:`LabStack.up` inserts one ``DOCKER-USER`` rule accepting frames from the
lab bridge to the same bridge, and :meth:`LabStack.down` removes it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hearth_runtime.ports import GATEWAY, HTTP_PORT, PORTS

REPO = Path(__file__).resolve().parents[2]
LAB_FILE = REPO / "docker-compose.lab.yml"
PROJECT_PREFIX = "hearth-lab"
RULE_COMMENT = "hearth-lab"
OPERATOR_TOKEN = "hearth-lab-operator"


class StackError(RuntimeError):
    """A compose or docker command failed; the message holds its output."""


def zuul_fixtures() -> Path:
    """The recorded Zuul documents the replay server serves: shared/fixtures/zuul beside the
    checkout (/work/main -> /work/shared) or beside a folder of worktrees (/work/wt/<name>).
    Docker would bind-mount a missing folder as an empty one, so it must exist."""
    for folder in REPO.parents:
        candidate = folder / "shared" / "fixtures" / "zuul"
        if candidate.is_dir():
            return candidate
    raise StackError(f"no shared/fixtures/zuul beside {REPO} or above it")


def compose_command() -> list[str]:
    """``docker compose`` when the plugin exists, else Debian's ``docker-compose``."""
    configured = os.environ.get("COMPOSE")
    if configured:
        return shlex.split(configured)
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise StackError("neither `docker compose` nor `docker-compose` is installed")


def engine_reachable() -> str | None:
    """None when a Docker engine answers, else why not."""
    if not shutil.which("docker"):
        return "the docker command is not installed"
    res = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0 or not res.stdout.strip():
        return f"no Docker engine reachable: {res.stderr.strip() or 'docker info failed'}"
    return None


def run(cmd: Sequence[str], *, timeout: float = 600, check: bool = True) -> str:
    res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise StackError(f"{shlex.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res.stdout


@dataclass
class LabStack:
    """One copy of the lab stack under compose project ``project``."""

    project: str = PROJECT_PREFIX
    prefix: str = "198.19.77"
    """First three octets of the lab's /24."""
    bridge: str = "hearth-lab0"
    fixtures: Path = field(default_factory=lambda: zuul_fixtures())
    compose: list[str] = field(default_factory=compose_command)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HEARTH_LAB_PREFIX": self.prefix,
            "HEARTH_LAB_BRIDGE": self.bridge,
            "HEARTH_ZUUL_FIXTURES": str(self.fixtures),
        }

    def address(self, last_octet: int) -> str:
        return f"{self.prefix}.{last_octet}"

    @property
    def gateway_grpc(self) -> str:
        return f"{self.address(10)}:{PORTS[GATEWAY].grpc}"

    @property
    def gateway_http(self) -> str:
        return f"http://{self.address(10)}:{HTTP_PORT}"

    @property
    def prometheus(self) -> str:
        return f"http://{self.address(9)}:9090"

    def compose_run(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        cmd = [*self.compose, "-f", str(LAB_FILE), "-p", self.project, *args]
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )
        if check and res.returncode != 0:
            raise StackError(
                f"{shlex.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}"
            )
        return res.stdout

    # -- life cycle ---------------------------------------------------------------------

    def up(self) -> None:
        """Allow multicast inside the lab bridge, then start every service (detached)."""
        self._rule("-I")
        self.compose_run("up", "-d", "--no-build", timeout=900)

    def down(self) -> str:
        """Remove containers, the network and volumes of this project, and the bridge rule."""
        try:
            return self.compose_run("down", "-v", "--remove-orphans", "--timeout", "5")
        finally:
            self._rule("-D")

    def _rule(self, action: str) -> None:
        spec = ["DOCKER-USER", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        spec += ["-m", "comment", "--comment", RULE_COMMENT]
        present = subprocess.run(["iptables", "-C", *spec], capture_output=True).returncode == 0
        if (action == "-I" and not present) or (action == "-D" and present):
            run(["iptables", action, *spec], timeout=30)

    # -- looking inside -----------------------------------------------------------------

    def container(self, service: str) -> str:
        ids = self.compose_run("ps", "-q", service).split()
        if not ids:
            raise StackError(f"no container for service {service!r}")
        return ids[0]

    def health(self) -> dict[str, str]:
        """Each service's container state: its health status if it has one, else its state."""
        states: dict[str, str] = {}
        ids = run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"]
        ).split()
        if not ids:
            return states
        for info in json.loads(run(["docker", "inspect", *ids])):
            name = info["Config"]["Labels"].get("com.docker.compose.service", info["Name"])
            state = info["State"]
            health = state.get("Health", {}).get("Status") if state["Running"] else None
            states[name] = health or state["Status"]
        return states

    def wait_healthy(self, services: Iterable[str], within: float) -> dict[str, str]:
        """Poll until every named service is healthy (or running, if it has no health
        check); raise with the states and the logs of the laggards at the deadline."""
        wanted = set(services)
        deadline = time.monotonic() + within
        while True:
            states = self.health()
            ready = {s for s in wanted if states.get(s) in {"healthy", "running"}}
            if ready == wanted:
                return states
            if any(states.get(s) in {"exited", "dead", "unhealthy"} for s in wanted):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        laggards = sorted(wanted - ready)
        logs = "\n".join(self.logs(s, tail=30) for s in laggards)
        raise StackError(f"not healthy: {', '.join(laggards)} (states {states})\n{logs}")

    def logs(self, service: str, tail: int = 100) -> str:
        return self.compose_run("logs", "--no-color", f"--tail={tail}", service, check=False)

    def exec(self, service: str, *cmd: str, timeout: float = 120, check: bool = True) -> str:
        """Run ``cmd`` in the service's container (docker exec) and return its stdout."""
        try:
            return run(
                ["docker", "exec", self.container(service), *cmd], timeout=timeout, check=check
            )
        except StackError as exc:
            raise StackError(f"{exc}\n{self._post_mortem(service)}") from None

    def exec_bytes(self, service: str, *cmd: str, timeout: float = 60) -> bytes:
        res = subprocess.run(
            ["docker", "exec", self.container(service), *cmd],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            raise StackError(
                f"{' '.join(cmd)} in {service} failed: {res.stderr.decode()}\n"
                + self._post_mortem(service)
            )
        return res.stdout

    def _post_mortem(self, service: str) -> str:
        """The container's state (exit code, OOM) and last log lines, for a failed exec."""
        out = run(
            ["docker", "inspect", "--format",
             "state {{.State.Status}} exit {{.State.ExitCode}} oom {{.State.OOMKilled}}"
             " finished {{.State.FinishedAt}}", self.container(service)],
            check=False,
        )  # fmt: skip
        return f"{service}: {out.strip()}\n{self.logs(service, tail=40)}"

    def stop(self, service: str) -> None:
        self.compose_run("stop", "--timeout", "5", service)

    def start(self, service: str) -> None:
        self.compose_run("start", service)

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes still labelled with this project."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": run(["docker", "ps", "-aq", "--filter", label]).split(),
            "networks": run(["docker", "network", "ls", "-q", "--filter", label]).split(),
            "volumes": run(["docker", "volume", "ls", "-q", "--filter", label]).split(),
        }


def sweep(prefix: str = PROJECT_PREFIX) -> list[str]:
    """Take down every lab project left behind by a crashed run; return their names."""
    projects: set[str] = set()
    for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        out = run(
            ["docker", *kind, "--filter", "label=com.docker.compose.project", "--format",
             '{{.Label "com.docker.compose.project"}}'],
            check=False,
        )  # fmt: skip
        projects.update(p for p in out.split() if p.startswith(prefix))
    for project in sorted(projects):
        LabStack(project=project).compose_run(
            "down", "-v", "--remove-orphans", "--timeout", "1", check=False
        )
    # Bridge rules whose bridge is gone (the network of a crashed run was removed above).
    for line in run(["iptables", "-S", "DOCKER-USER"], check=False).splitlines():
        words = shlex.split(line)
        if RULE_COMMENT in words and "-i" in words:
            bridge = words[words.index("-i") + 1]
            if not Path("/sys/class/net", bridge).exists():
                run(["iptables", "-D", *words[1:]], check=False)
    return sorted(projects)
