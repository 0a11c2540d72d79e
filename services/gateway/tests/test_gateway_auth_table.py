"""One authorization behaviour, whatever the door.

The golden table below is run against every way into the gateway: the gRPC port served by
hearth-edge or by Python, gRPC with TLS, and the HTTP face (each with either front door).
Every case must give the same gRPC code, ErrorInfo reason and message everywhere. And every
method of every contract, called by every kind of caller, gets from both front doors the
answer its ``hearth.auth.v1.policy`` option says (the table is the descriptors).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from gateway_harness import OPERATOR, VIEWER, MakeGateway, Running, create_host  # type: ignore[import-not-found]
from gateway_wire import GrpcAnswer, curl_grpc, decode_status, raw_http  # type: ignore[import-not-found]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from hearth.wake.v1 import wake_pb2
from hearth_gateway.catalog import Method, build_catalog
from hearth_runtime.logs import KeyValueFormatter
from hearth_runtime.ports import BACKENDS
from hearth_testing import wait_for_async

WAKE = "hearth.wake.v1.WakeService"
RATES = {f"{WAKE}/WakeHost": "1000/min", f"{WAKE}/WaitUntilAwake": "0/min"}

# rpc -> (gRPC path, request, HTTP verb and path, HTTP body)
RPCS = {
    "read": (f"/{WAKE}/ListHosts", wake_pb2.ListHostsRequest(), "GET", "/v1/hosts", b""),
    "write": (
        f"/{WAKE}/WakeHost",
        wake_pb2.WakeHostRequest(name="hosts/ghost"),
        "POST",
        "/v1/hosts/ghost:wake",
        b"{}",
    ),
    "closed": (
        f"/{WAKE}/WaitUntilAwake",
        wake_pb2.WaitUntilAwakeRequest(name="hosts/ghost"),
        "POST",
        "/v1/hosts/ghost:waitUntilAwake",
        b"{}",
    ),
    "get": (
        f"/{WAKE}/GetHost",
        wake_pb2.GetHostRequest(name="hosts/devbox"),
        "GET",
        "/v1/hosts/devbox",
        b"",
    ),
}

V, OP = VIEWER.encode(), OPERATOR.encode()
NEEDS_VIEWER = f"{WAKE}/ListHosts needs a bearer token with role viewer"
NEEDS_OPERATOR = f"{WAKE}/WakeHost needs a bearer token with role operator"
INVALID = "invalid bearer token"


@dataclass(frozen=True)
class Case:
    name: str
    rpc: str
    authorization: bytes | None
    code: grpc.StatusCode
    reason: str = ""
    message: str | None = None  # None: not compared (OK, or the backend's own message)


GOLDEN = [
    Case("no header", "read", None, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REQUIRED",
         NEEDS_VIEWER),
    Case("empty", "read", b"", grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REQUIRED", NEEDS_VIEWER),
    Case("blank", "read", b"   ", grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REQUIRED", NEEDS_VIEWER),
    Case("spaces around", "read", b"  Bearer " + V + b"  ", grpc.StatusCode.OK),
    Case("lowercase scheme", "read", b"bearer " + V, grpc.StatusCode.OK),
    Case("two spaces", "read", b"BEARER  " + V, grpc.StatusCode.OK),
    Case("space inside", "read", b"Bearer " + V[:4] + b" " + V[4:],
         grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN", INVALID),
    Case("tab after scheme", "read", b"Bearer\t" + V, grpc.StatusCode.UNAUTHENTICATED,
         "INVALID_TOKEN", INVALID),
    Case("wrong scheme", "read", b"Basic " + V, grpc.StatusCode.UNAUTHENTICATED,
         "INVALID_TOKEN", INVALID),
    Case("scheme only", "read", b"Bearer", grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN",
         INVALID),
    Case("token only", "read", V, grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN", INVALID),
    Case("not token68", "read", b"Bearer ab\"c", grpc.StatusCode.UNAUTHENTICATED,
         "INVALID_TOKEN", INVALID),
    Case("non-ASCII", "read", "Bearer tök".encode(), grpc.StatusCode.UNAUTHENTICATED,
         "INVALID_TOKEN", INVALID),
    Case("one over the maximum", "read", b"Bearer " + b"a" * 1025,
         grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN", INVALID),
    Case("huge", "read", b"Bearer " + b"a" * 6000, grpc.StatusCode.UNAUTHENTICATED,
         "INVALID_TOKEN", INVALID),
    Case("unknown", "read", b"Bearer not-a-token", grpc.StatusCode.UNAUTHENTICATED,
         "INVALID_TOKEN", INVALID),
    Case("viewer reads", "read", b"Bearer " + V, grpc.StatusCode.OK),
    Case("operator reads", "read", b"Bearer " + OP, grpc.StatusCode.OK),
    Case("anonymous writes", "write", None, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REQUIRED",
         NEEDS_OPERATOR),
    Case("viewer writes", "write", b"Bearer " + V, grpc.StatusCode.PERMISSION_DENIED,
         "ROLE_REQUIRED", f"victor (viewer) may not call {WAKE}/WakeHost: needs role operator"),
    Case("operator writes", "write", b"Bearer " + OP, grpc.StatusCode.NOT_FOUND, "NOT_FOUND",
         "host 'hosts/ghost' not found"),
    Case("rate limit 0/min", "closed", b"Bearer " + OP, grpc.StatusCode.RESOURCE_EXHAUSTED,
         "RATE_LIMITED", "WaitUntilAwake is switched off: its rate limit is 0 per 60 s"),
]  # fmt: skip

DOORS = [f"{front}-{face}" for front in ("edge", "python") for face in ("grpc", "tls", "http")]


@pytest.fixture
def front(request: pytest.FixtureRequest) -> str:
    """Which front door serves gRPC (conftest.make_gateway reads it): the door's
    (the edge for a test without doors, which says grpc_front itself)."""
    callspec = getattr(request.node, "callspec", None)
    door: str = callspec.params.get("door", "edge-grpc") if callspec else "edge-grpc"
    return door.split("-")[0]


class Door:
    """One way into a running gateway; ``call`` answers (code, reason, message)."""

    def __init__(self, gw: Running, face: str, cert: Path, tls_port: int) -> None:
        self.gw, self.face, self.cert, self.tls_port = gw, face, cert, tls_port
        self.channel = gw.channel
        if face == "tls":
            creds = grpc.ssl_channel_credentials(cert.read_bytes())
            self.channel = grpc.aio.secure_channel(f"localhost:{tls_port}", creds)

    async def close(self) -> None:
        if self.face == "tls":
            await self.channel.close()

    async def call(
        self, rpc: str, authorization: bytes | None, extra: tuple[tuple[str, str], ...] = ()
    ) -> GrpcAnswer:
        path, request, verb, url, body = RPCS[rpc]
        if self.face == "http":
            return await self._http(verb, url, body, authorization, extra)
        sendable = authorization is None or (authorization.isascii() and b"\t" not in authorization)
        if not sendable:  # grpc-python will not send it; curl sends the bytes as they are
            assert authorization is not None
            base = (
                f"https://localhost:{self.tls_port}"
                if self.face == "tls"
                else f"http://{self.gw.grpc_address}"
            )
            headers = [b"authorization: " + authorization]
            headers += [f"{k}: {v}".encode() for k, v in extra]
            return await curl_grpc(base, path, request.SerializeToString(), headers, self.cert)
        metadata = [(k, v) for k, v in extra]
        if authorization is not None:
            metadata.append(("authorization", authorization.decode()))
        stub = self.channel.unary_unary(
            path, request_serializer=type(request).SerializeToString, response_deserializer=bytes
        )
        try:
            await stub(request, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            trailers = dict(exc.trailing_metadata() or ())
            details = trailers.get("grpc-status-details-bin")
            encoded = base64.b64encode(details).decode() if isinstance(details, bytes) else None
            return decode_status(exc.code().value[0], exc.details() or "", encoded)
        return GrpcAnswer(0, "", "")

    async def _http(
        self,
        verb: str,
        url: str,
        body: bytes,
        authorization: bytes | None,
        extra: tuple[tuple[str, str], ...],
    ) -> GrpcAnswer:
        head = f"{verb} {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
        if authorization is not None:
            head += b"Authorization: " + authorization + b"\r\n"
        for key, value in extra:
            head += f"{key}: {value}\r\n".encode()
        answer = await raw_http(self.gw.gateway.http_port, head, body, cafile=self.cert)
        if answer.status == 200:
            return GrpcAnswer(0, "", "")
        error = json.loads(answer.body)
        reasons = [d.get("reason", "") for d in error["details"] if "ErrorInfo" in d["@type"]]
        return GrpcAnswer(error["code"], error["message"], reasons[0] if reasons else "")


@pytest.fixture
async def door(
    request: pytest.FixtureRequest, make_gateway: MakeGateway, certificate: tuple[Path, Path]
) -> AsyncIterator[Door]:
    cert, key = certificate
    gw = await make_gateway(
        tls_cert_file=cert,
        tls_key_file=key,
        grpc_tls_listen="127.0.0.1:0",  # the port the system picks (no race for a free one)
        rate_limits=getattr(request.function, "rates", RATES),
        anonymous_read=getattr(request.function, "anonymous_read", False),
    )
    name: str = request.param
    opened = Door(gw, name.split("-")[1], cert, gw.gateway.tls_port)
    yield opened
    await opened.close()


@pytest.mark.parametrize("door", DOORS, indirect=True)
async def test_golden_auth_cases_answer_the_same_at_every_door(door: Door) -> None:
    wrong = []
    for case in GOLDEN:
        try:
            got = await door.call(case.rpc, case.authorization)
        except AssertionError as exc:
            wrong.append(f"{case.name}: {exc}")
            continue
        want = (case.code.value[0], case.reason)
        if (got.code, got.reason) != want or (
            case.message is not None and got.message != case.message
        ):
            wrong.append(f"{case.name}: got {got}, want {want} {case.message!r}")
    assert not wrong, "\n".join(wrong)


# With anonymous_read, no token (or a blank one) reads; a malformed one is still refused.
GOLDEN_ANONYMOUS_READ = [
    Case("no header", "read", None, grpc.StatusCode.OK),
    Case("blank", "read", b"  ", grpc.StatusCode.OK),
    Case("scheme only", "read", b"Bearer", grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN",
         INVALID),
    Case("unknown", "read", b"Bearer nope", grpc.StatusCode.UNAUTHENTICATED, "INVALID_TOKEN",
         INVALID),
    Case("anonymous writes", "write", None, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REQUIRED",
         NEEDS_OPERATOR),
    Case("viewer writes", "write", b"Bearer " + V, grpc.StatusCode.PERMISSION_DENIED,
         "ROLE_REQUIRED", f"victor (viewer) may not call {WAKE}/WakeHost: needs role operator"),
]  # fmt: skip


@pytest.mark.parametrize("door", DOORS, indirect=True)
async def test_golden_cases_with_anonymous_read(door: Door) -> None:
    wrong = []
    for case in GOLDEN_ANONYMOUS_READ:
        got = await door.call(case.rpc, case.authorization)
        if (got.code, got.reason) != (case.code.value[0], case.reason) or (
            case.message is not None and got.message != case.message
        ):
            wrong.append(f"{case.name}: got {got}, want {case.code} {case.reason}")
    assert not wrong, "\n".join(wrong)


test_golden_cases_with_anonymous_read.anonymous_read = True  # type: ignore[attr-defined]


@pytest.mark.parametrize("door", DOORS, indirect=True)
async def test_a_forged_principal_or_client_never_reaches_the_backend(door: Door) -> None:
    await create_host(door.gw)
    forged = (
        ("x-hearth-principal", "olivia"),
        ("x-hearth-role", "operator"),
        ("x-forwarded-for", "203.0.113.9"),
    )
    answer = await door.call("get", b"Bearer " + V, forged)
    assert answer.code == 0, answer
    pairs = door.gw.backends.wake.metadata_pairs[-1]
    internal = [(k, v) for k, v in pairs if k.startswith("x-hearth-")]
    assert internal == [("x-hearth-principal", "victor")], pairs
    clients = [v for k, v in pairs if k == "x-forwarded-for"]
    assert len(clients) == 1 and "127.0.0.1" in clients[0], clients


@pytest.mark.parametrize("door", ["edge-grpc", "python-grpc"], indirect=True)
async def test_one_rate_limit_bucket_per_caller_across_ports_and_faces(door: Door) -> None:
    """3 WakeHost calls a minute, spent on three ways in: the 4th is refused on each."""
    tls = Door(door.gw, "tls", door.cert, door.tls_port)
    http = Door(door.gw, "http", door.cert, door.tls_port)
    try:
        for way in (door, tls, http):
            answer = await way.call("write", b"Bearer " + OP)
            assert answer.reason == "NOT_FOUND", (way.face, answer)  # allowed through
        for way in (door, tls, http):
            answer = await way.call("write", b"Bearer " + OP)
            assert answer.reason == "RATE_LIMITED", (way.face, answer)
    finally:
        await tls.close()


test_one_rate_limit_bucket_per_caller_across_ports_and_faces.rates = {  # type: ignore[attr-defined]
    f"{WAKE}/WakeHost": "3/min"
}


@pytest.mark.parametrize("door", ["edge-grpc", "python-grpc", "edge-tls"], indirect=True)
async def test_audit_lines_are_neutral_text(door: Door, caplog: pytest.LogCaptureFixture) -> None:
    """A resource name with an escape sequence and a newline (a forged second line) is
    written escaped, on one line, whichever door took the call."""
    hostile = "hosts/\x1b[2J\u202e\nFAKE audit who=root"
    stub = door.channel.unary_unary(
        f"/{WAKE}/WakeHost",
        request_serializer=wake_pb2.WakeHostRequest.SerializeToString,
        response_deserializer=bytes,
    )
    with caplog.at_level(logging.INFO, logger="hearth.audit"):
        with pytest.raises(grpc.aio.AioRpcError):
            await stub(
                wake_pb2.WakeHostRequest(name=hostile),
                metadata=[("authorization", f"Bearer {OPERATOR}")],
            )

        async def audited() -> list[logging.LogRecord] | None:
            found = [r for r in caplog.records if r.name == "hearth.audit"]
            return found or None

        records = await wait_for_async("the audit line", audited, within=5)
    assert records is not None
    line = KeyValueFormatter("gateway").format(records[-1])
    assert "\x1b" not in line and "\n" not in line and "\u202e" not in line, line
    assert "\\x1b[2J" in line and "FAKE audit" in line


@pytest.mark.parametrize("door", ["edge-tls"], indirect=True)
async def test_a_tls_call_is_served_by_the_edge_and_counted_once(door: Door) -> None:
    """The edge serves gRPC with TLS itself (one door for both ports); the call is in
    grpc_server_handled once for the gateway (plus once for the backend double, which runs
    in this process)."""
    edge = door.gw.gateway.edge
    assert edge is not None and edge.tls_port == door.tls_port != 0
    labels = {
        "grpc_type": "unary",
        "grpc_service": WAKE,
        "grpc_method": "ListHosts",
        "grpc_code": "OK",
    }

    def handled() -> float:
        return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0

    before = handled()
    assert (await door.call("read", b"Bearer " + V)).code == 0
    await asyncio.sleep(0.5)  # the edge reports its calls within 50 ms
    assert handled() - before == 2


_AUTH_PARTS = st.sampled_from(
    ["Bearer", "bearer", "BEARER", "Basic", " ", "  ", "\t", "=", "==", VIEWER, OPERATOR,
     "not-a-token", "é", "ü", "a" * 1020, "/+._~-", '"', ",", ";"]
) | st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\té€"),
    max_size=12,
)  # fmt: skip


@pytest.mark.parametrize("door", ["edge-grpc"], indirect=True)
async def test_generated_authorization_values_answer_the_same_at_every_front_door(
    door: Door, make_gateway: MakeGateway
) -> None:
    """Any Authorization value gets the same code, reason and message from the edge, the
    Python front door and the HTTP face (hypothesis makes the values up)."""
    python = await make_gateway(grpc_front="python", rate_limits=RATES)
    doors = {
        "edge": door,
        "python": Door(python, "grpc", door.cert, 0),
        "http": Door(door.gw, "http", door.cert, 0),
    }
    loop = asyncio.get_running_loop()

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(_AUTH_PARTS, min_size=1, max_size=4), st.sampled_from(["read", "write"]))
    def same_everywhere(parts: list[str], rpc: str) -> None:
        value = "".join(parts).encode()
        answers = {
            name: asyncio.run_coroutine_threadsafe(way.call(rpc, value), loop).result(30)
            for name, way in doors.items()
        }
        seen = {(a.code, a.reason, a.message) for a in answers.values()}
        assert len(seen) == 1, (value, answers)

    await asyncio.to_thread(same_everywhere)


@pytest.mark.parametrize("door", ["edge-tls"], indirect=True)
async def test_a_watch_over_tls_ends_with_its_caller(door: Door) -> None:
    await create_host(door.gw)
    stream = door.channel.unary_stream(
        f"/{WAKE}/WatchHostEvents",
        request_serializer=wake_pb2.WatchHostEventsRequest.SerializeToString,
        response_deserializer=wake_pb2.HostEvent.FromString,
    )(wake_pb2.WatchHostEventsRequest(), metadata=[("authorization", f"Bearer {VIEWER}")])
    first = await asyncio.wait_for(stream.read(), 5)
    assert first.kind == wake_pb2.HostEvent.KIND_CURRENT and first.host.name == "hosts/devbox"
    events = door.gw.backends.wake.events
    assert events.subscribers == 1
    stream.cancel()

    async def ended() -> bool:
        return events.subscribers == 0

    await wait_for_async("the backend's watch to end", ended, within=5)


CALLERS = {"anonymous": None, "stranger": "not-a-token", "viewer": VIEWER, "operator": OPERATOR}
REFUSALS = {"TOKEN_REQUIRED", "INVALID_TOKEN", "ROLE_REQUIRED"}


def policy_answer(method: Method, caller: str) -> tuple[int, str, str] | None:
    """What the door answers ``caller`` for ``method``, by the method's policy option; None
    if the call may go on (then the backend answers)."""
    need = method.policy.role
    if caller == "anonymous":
        return (
            grpc.StatusCode.UNAUTHENTICATED.value[0],
            "TOKEN_REQUIRED",
            f"{method.full_name} needs a bearer token with role {need}",
        )
    if caller == "stranger":
        return grpc.StatusCode.UNAUTHENTICATED.value[0], "INVALID_TOKEN", INVALID
    if caller == "viewer" and need == "operator":
        return (
            grpc.StatusCode.PERMISSION_DENIED.value[0],
            "ROLE_REQUIRED",
            f"victor (viewer) may not call {method.full_name}: needs role operator",
        )
    return None


async def call_method(channel: grpc.aio.Channel, method: Method, token: str | None) -> GrpcAnswer:
    """``method`` with an empty request; a stream is read to its first message."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    request = method.request_cls()
    try:
        if method.server_streaming:
            stream: Any = channel.unary_stream(
                method.path, request_serializer=type(request).SerializeToString
            )(request, metadata=metadata, timeout=10)
            await stream.read()
            stream.cancel()
        else:
            await channel.unary_unary(
                method.path, request_serializer=type(request).SerializeToString
            )(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        details = dict(exc.trailing_metadata() or ()).get("grpc-status-details-bin")
        encoded = base64.b64encode(details).decode() if isinstance(details, bytes) else None
        return decode_status(exc.code().value[0], exc.details() or "", encoded)
    return GrpcAnswer(0, "", "")


async def test_every_method_and_caller_get_the_policys_answer_from_both_front_doors(
    make_gateway: MakeGateway,
) -> None:
    """Every method of every contract (the wake, audio and ci backends' and the gateway's
    own), called by no token, a wrong one, a viewer and an operator: the edge and the Python
    front door answer alike, and as the method's policy option says."""
    doors = {
        "edge": await make_gateway(grpc_front="edge"),
        "python": await make_gateway(grpc_front="python"),
    }
    assert doors["edge"].gateway.edge is not None and doors["python"].gateway.edge is None
    for running in doors.values():
        await create_host(running)  # so that every watch has a first message to send
    methods = sorted(build_catalog(BACKENDS).methods.values(), key=lambda m: m.path)
    assert {m.backend for m in methods} == {*BACKENDS, "gateway"}
    wrong = []
    for method in methods:
        for caller, token in CALLERS.items():
            answers = {
                name: await call_method(running.channel, method, token)
                for name, running in doors.items()
            }
            want = policy_answer(method, caller)
            for name, got in answers.items():
                if want is None and got.reason in REFUSALS:
                    wrong.append(f"{method.full_name} {caller} at {name}: refused, {got}")
                elif want is not None and (got.code, got.reason, got.message) != want:
                    wrong.append(f"{method.full_name} {caller} at {name}: {got}, want {want}")
            if answers["edge"] != answers["python"]:
                wrong.append(f"{method.full_name} {caller}: the doors differ: {answers}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("front", ["edge", "python"])
async def test_a_policys_rate_is_the_default_and_rate_limits_override_it(
    make_gateway: MakeGateway,
) -> None:
    """WakeHost's option says 10/min: the 11th call is refused; rate_limits replaces a
    method's rate (here WaitUntilAwake's 10/min by 0/min, so it is switched off)."""
    gw = await make_gateway(rate_limits={f"{WAKE}/WaitUntilAwake": "0/min"})
    wake_host = build_catalog(BACKENDS).methods[f"/{WAKE}/WakeHost"]
    assert wake_host.policy.rate == (10, 60.0)
    answers = [await call_method(gw.channel, wake_host, OPERATOR) for _ in range(11)]
    assert [a.reason for a in answers[:10]] == ["NOT_FOUND"] * 10, answers
    assert answers[10].reason == "RATE_LIMITED", answers[10]
    closed = build_catalog(BACKENDS).methods[f"/{WAKE}/WaitUntilAwake"]
    answer = await call_method(gw.channel, closed, OPERATOR)
    assert (answer.reason, answer.message) == (
        "RATE_LIMITED",
        "WaitUntilAwake is switched off: its rate limit is 0 per 60 s",
    )
