"""Every service, started as a real process: health, reflection, metrics, SIGTERM, bad config."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_testing import ServiceProcess, metric_value, scrape


@dataclass
class Probe:
    service: str
    full_name: str
    method: str
    call: Any  # (channel) -> response


PROBES = [
    Probe(
        "wake",
        "hearth.wake.v1.WakeService",
        "ListHosts",
        lambda ch: wake_pb2_grpc.WakeServiceStub(ch).ListHosts(wake_pb2.ListHostsRequest()),
    ),
    Probe(
        "audio",
        "hearth.audio.v1.AudioService",
        "ListStreams",
        lambda ch: audio_pb2_grpc.AudioServiceStub(ch).ListStreams(audio_pb2.ListStreamsRequest()),
    ),
    Probe(
        "ci",
        "hearth.ci.v1.CiService",
        "ListWatches",
        lambda ch: ci_pb2_grpc.CiServiceStub(ch).ListWatches(ci_pb2.ListWatchesRequest()),
    ),
    Probe(
        "gateway",
        "hearth.gateway.v1.GatewayService",
        "GetSystemStatus",
        lambda ch: gateway_pb2_grpc.GatewayServiceStub(ch).GetSystemStatus(
            gateway_pb2.GetSystemStatusRequest()
        ),
    ),
]


def service_env(service: str, tmp_path: Path) -> dict[str, str]:
    prefix = f"HEARTH_{service.upper()}_"
    env = {
        prefix + "GRPC_LISTEN": "127.0.0.1:0",
        prefix + "METRICS_LISTEN": "127.0.0.1:0",
        prefix + "STATE_DIR": str(tmp_path / service),
        prefix + "SHUTDOWN_GRACE_SECONDS": "2",
    }
    if service == "gateway":
        env[prefix + "HTTP_LISTEN"] = "127.0.0.1:0"
        env[prefix + "ANONYMOUS_READ"] = "true"  # the probe is a read; auth has its own tests
    return env


@pytest.fixture(params=PROBES, ids=lambda p: p.service)
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    probe: Probe = request.param
    env = service_env(probe.service, tmp_path)
    backends: list[ServiceProcess] = []
    try:
        if probe.service == "gateway":
            # The gateway's overall health aggregates its backends: give it real ones.
            for name in ("wake", "audio", "ci"):
                backend = ServiceProcess(name, env=service_env(name, tmp_path)).start()
                backends.append(backend)
                env[f"HEARTH_GATEWAY_{name.upper()}_ADDRESS"] = backend.grpc_address
        with ServiceProcess(probe.service, env=env) as proc:
            yield probe, proc
    finally:
        for backend in backends:
            backend.stop()


def test_health_reflection_and_metrics(running: Any) -> None:
    probe, proc = running
    with grpc.insecure_channel(proc.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", probe.full_name):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        with pytest.raises(grpc.RpcError) as err:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        # A real reflection client, as grpcurl uses: list services, resolve a method.
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {
            probe.full_name,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= services
        pool = DescriptorPool(database)
        method = pool.FindServiceByName(probe.full_name).FindMethodByName(probe.method)
        assert method.full_name == f"{probe.full_name}.{probe.method}"

        before = (
            metric_value(
                scrape(proc.metrics_address),
                "grpc_server_handled_total",
                grpc_service=probe.full_name,
                grpc_method=probe.method,
                grpc_code="OK",
            )
            or 0.0
        )
        probe.call(channel)
        after = metric_value(
            scrape(proc.metrics_address),
            "grpc_server_handled_total",
            grpc_service=probe.full_name,
            grpc_method=probe.method,
            grpc_code="OK",
        )
        assert after == before + 1

    samples = scrape(proc.metrics_address)
    assert metric_value(samples, "process_resident_memory_bytes") is not None
    assert (
        metric_value(
            samples,
            "grpc_server_handling_seconds_count",
            grpc_service=probe.full_name,
            grpc_method=probe.method,
        )
        == 1
    )


def test_sigterm_goes_not_serving_and_exits_zero(running: Any) -> None:
    _, proc = running
    with grpc.insecure_channel(proc.grpc_address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        first = next(watch)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        proc.signal(signal.SIGTERM)
        statuses = []
        try:
            for reply in watch:
                statuses.append(reply.status)
        except grpc.RpcError:
            pass  # the stream ends when the server stops
        assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    # The grace period is 2 s; the process must be gone well before a second one ends.
    assert proc.wait(timeout=2 + 3) == 0
    assert "stopped" in proc.output


@pytest.mark.parametrize("service", ["wake", "audio", "ci", "gateway"])
def test_invalid_config_names_the_variable(service: str, tmp_path: Path) -> None:
    env = service_env(service, tmp_path)
    env[f"HEARTH_{service.upper()}_GRPC_LISTEN"] = "nowhere"
    proc = ServiceProcess(service, env=env)
    with pytest.raises(RuntimeError) as err:
        proc.start()
    assert proc.proc is not None and proc.proc.returncode == 2
    assert f"HEARTH_{service.upper()}_GRPC_LISTEN" in str(err.value)
    assert "'nowhere' is not a host:port address" in str(err.value)


def test_yaml_config_file_is_read_and_env_overrides_it(tmp_path: Path) -> None:
    config = tmp_path / "wake.yaml"
    config.write_text("log_level: [not, a, level]\n")
    env = service_env("wake", tmp_path)
    proc = ServiceProcess("wake", env=env, args=["--config", str(config)])
    with pytest.raises(RuntimeError) as err:
        proc.start()
    assert "log_level" in str(err.value)

    env["HEARTH_WAKE_LOG_LEVEL"] = "debug"  # the environment beats the file
    with ServiceProcess("wake", env=env, args=["--config", str(config)]) as ok:
        assert ok.grpc_address


LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO |DEBUG|WARNING|ERROR) (\w+): (.+)$"
)


def test_every_line_has_the_one_log_format(running: Any) -> None:
    probe, proc = running
    proc.stop()
    lines = [line for line in proc.lines if line and not line.startswith((" ", "Traceback"))]
    assert lines
    for line in lines:
        match = LOG_LINE.match(line)
        assert match, f"not in the shared format: {line!r}"
        assert match.group(2) == probe.service
    serving = next(line for line in lines if " serving " in line)
    assert re.search(r" grpc=127\.0\.0\.1:\d+ metrics=127\.0\.0\.1:\d+ ", serving)
