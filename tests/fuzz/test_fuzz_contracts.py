"""Generated requests for every RPC of every hearth service, on real processes.

Each RPC found in the descriptors (``discover_rpcs``: a new RPC is covered without a new
test) gets hypothesis-generated requests sent four ways: straight to its service, through
the gateway with hearth-edge as its front door, through the gateway with the Python front
door, and through the gateway's HTTP face (requests built from the google.api.http
annotations). Per call: the status is never UNKNOWN, INTERNAL or DATA_LOSS, nor an answer
the client cannot read (trailers over its limit), nor a gateway's "backend unavailable" for a
backend that is up; the call ends within its deadline (DEADLINE_EXCEEDED only for calls
meant to wait, see WAITING); a rejected write leaves the stored items as they were; the log
entries written meanwhile are in the shared format, free of control characters and of
tracebacks; the processes stay alive and SERVING. The HTTP face never answers 500 or 502
(503/504 only when the backend itself said UNAVAILABLE / the call was meant to wait). At the
end: peak memory (VmHWM) bounded, every process restarted on its state, every stored item
loads again with the same settings.

Budget: HEARTH_FUZZ_EXAMPLES examples per RPC and door (default 10: `make test`; `make fuzz`
sets more and HEARTH_FIGURES_FILE so the counts land in bench/results/fuzz.json).

Known findings (FINDINGS below) are marked xfail(strict=True) per RPC and door, and their
minimal requests are replayed first, so the test fails the same way every run; when the
owning helper fixes one, its test XPASSes, which fails strictly: remove the entry then.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import grpc
import pytest
from fuzz_house import AUTH, BACKENDS, GATEWAYS, House, house_at  # type: ignore[import-not-found]
from google.protobuf import text_format
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from hypothesis import HealthCheck, given, settings
from hypothesis.internal.conjecture import engine as _engine
from proto_strategies import Rpc, discover_rpcs, http_request, message_strategy  # type: ignore[import-not-found]

from hearth_lab import lab_available
from hearth_testing import figures

pytestmark = [pytest.mark.lab, pytest.mark.slow]

EXAMPLES = int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "10"))
CALL_DEADLINE = 5.0  # seconds: any unary call, and a stream's first message
HTTP_TIMEOUT = 15.0  # the gateway's own HTTP deadline is 8 s (fuzz_house)
# Peak RSS may grow this much over the whole run (KiB) before it counts as unbounded.
RSS_GROWTH_LIMIT_KIB = 256 * 1024
MAX_HTTP_LINE = 8190
# The gateways' UNAVAILABLE for a backend they cannot reach (hearth_gateway.backends, edge).
_BACKEND_DOWN = re.compile(r"^backend \w+ \(.*\) is unavailable")
BAD = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}

# RPCs that wait by design, with the request field that bounds the wait (None: no field).
# DEADLINE_EXCEEDED at the client's deadline is their normal answer, unless the request
# itself asked for a wait that ends well before it.
WAITING: dict[str, str | None] = {
    "hearth.wake.v1.WakeService/WaitUntilAwake": "timeout",
    "hearth.audio.v1.AudioService/MeasureSync": "duration",
    "hearth.audio.v1.AudioService/CalibrateSync": None,
}
# Shrinking a failure that hangs costs a deadline per step: keep it to a minute.
if hasattr(_engine, "MAX_SHRINKING_SECONDS"):
    _engine.MAX_SHRINKING_SECONDS = 60


@dataclass
class Finding:
    """A failure found by this harness and written to /work/wt/findings/<service>.md."""

    reason: str
    doors: tuple[str, ...]  # "direct", "edge", "python", "http"
    requests: tuple[str, ...] = ()  # minimal requests, protobuf text format
    found: list[str] = field(default_factory=list)


# (RPC full name) -> Finding: known failures, each marked xfail(strict=True) at its doors
# until fixed (then it XPASSes, fails, and its entry goes). Empty: every finding is fixed
# (ci's out-of-range refresh_interval Duration; the gateway's logged LineTooLong).
FINDINGS: dict[str, Finding] = {}

# Log entries of known findings that have a test of their own (not per RPC: any generated
# request can trigger them); the generic log check leaves them out.
KNOWN_LOG_FINDINGS: list[re.Pattern[str]] = []

RPCS = discover_rpcs()
DOORS = ("direct", "edge", "python", "http")


def _params() -> list[Any]:
    params = []
    # Deletes first: what later generated Creates store is still there for the restart check.
    for rpc in sorted(RPCS, key=lambda r: not r.method.name.startswith("Delete")):
        for door in DOORS:
            if rpc.service == "gateway" and door == "direct":
                continue  # the gateway's own API: its doors are the gateway's two fronts
            if door == "http" and rpc.http_rule() is None:
                continue
            marks = []
            finding = FINDINGS.get(rpc.full_name)
            if finding and door in finding.doors:
                marks.append(pytest.mark.xfail(strict=True, reason=finding.reason))
            params.append(pytest.param(rpc, door, id=f"{door}-{rpc.full_name}", marks=marks))
    return params


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Iterator[House]:
    ok, reason = lab_available()
    if not ok:
        pytest.skip(f"hearth_lab: {reason}")
    yield from house_at(tmp_path_factory.mktemp("fuzz-state"))


# --------------------------------------------------------------------------- one call


def _duration_seconds(msg: Message, field_name: str | None) -> float | None:
    if not field_name or not msg.HasField(field_name):
        return None
    d = getattr(msg, field_name)
    return float(d.seconds) + d.nanos / 1e9


def _deadline(rpc: Rpc, request: Message) -> tuple[float, bool]:
    """(client deadline, whether DEADLINE_EXCEEDED is an acceptable answer)."""
    if rpc.streaming:
        return 3.0, True  # open, read the first message or until this, cancel
    if rpc.full_name in WAITING:
        own = _duration_seconds(request, WAITING[rpc.full_name])
        if own is not None and 0 < own <= 2:
            return own + CALL_DEADLINE, False  # asked to wait at most 2 s: must answer
        return CALL_DEADLINE, True
    return CALL_DEADLINE, False


def grpc_problem(house: House, door: str, rpc: Rpc, request: Message) -> tuple[str | None, str]:
    """(None if the call kept the contract, else what went wrong; the status code's name)."""
    target = rpc.service if door == "direct" else door
    channel = house.channel(target)
    metadata = None if door == "direct" else AUTH
    timeout, may_expire = _deadline(rpc, request)
    started = time.monotonic()
    try:
        if rpc.streaming:
            stream = channel.unary_stream(
                rpc.path,
                request_serializer=rpc.request_class.SerializeToString,
                response_deserializer=rpc.response_class.FromString,
            )(request, timeout=timeout, metadata=metadata)
            try:
                next(stream)
            except StopIteration:
                pass
            finally:
                stream.cancel()
        else:
            channel.unary_unary(
                rpc.path,
                request_serializer=rpc.request_class.SerializeToString,
                response_deserializer=rpc.response_class.FromString,
            )(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as exc:
        code = exc.code()
        details = exc.details() or ""
        if code in BAD:
            return f"status {code.name}: {details[:300]!r}", code.name
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "metadata size exceeds" in details:
            # grpc's client refused the answer's trailers (over 8/16 KiB): the service's own
            # status never arrived (an error message echoing a huge request field).
            return f"answer unreadable: {details[:200]!r}", "TRAILERS_TOO_LARGE"
        if code == grpc.StatusCode.UNAVAILABLE and _BACKEND_DOWN.match(details):
            # The gateway says the backend is down: true only if it is not alive and serving.
            backend = rpc.service
            if backend in BACKENDS and house.alive(backend) and house.wait_serving(backend, 2):
                return f"gateway said {details[:200]!r}, the backend is up", "FALSE_UNAVAILABLE"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and not may_expire:
            took = time.monotonic() - started
            if rpc.full_name in WAITING and took < timeout - 1.0:
                # The service's own answer when the request's wait ends ("not awake after
                # 1e-09 s"): the request's timeout was honoured.
                return None, code.name
            return f"DEADLINE_EXCEEDED after {took:.1f} s (deadline {timeout:.1f} s)", code.name
        return None, code.name
    return None, "OK"


def http_problem(house: House, rpc: Rpc, request: Message) -> tuple[str | None, str]:
    problem, status = _http_call(house, rpc, request)
    return problem, f"HTTP_{status}"


def _http_call(house: House, rpc: Rpc, request: Message) -> tuple[str | None, int]:
    verb, path, body, query = http_request(rpc, request)
    url = path + ("?" + urlencode(query) if query else "")
    headers = {"Authorization": f"Bearer {house_token()}", "Accept": "application/json"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    host, _, port = house.http["edge"].rpartition(":")
    timeout = 3.0 if rpc.streaming else HTTP_TIMEOUT
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(verb, url, body=payload, headers=headers)
        response = conn.getresponse()
        status = response.status
        try:
            text = response.read1(4096) if rpc.streaming else response.read(8192)
        except TimeoutError:
            text = b""
            if not rpc.streaming:
                return f"HTTP {status}: body not complete in {timeout} s", status
    except TimeoutError:
        return f"HTTP: no answer in {timeout} s", 0
    except (ConnectionError, http.client.HTTPException) as exc:
        if len(url) > MAX_HTTP_LINE:
            # The server refuses a request line this long (aiohttp: 8190 bytes) and closes
            # the connection while the client is still sending it: a refusal, not a crash.
            return None, 0
        return f"HTTP: connection failed: {exc!r}", 0
    finally:
        conn.close()
    if status == 500 or status == 502:
        return f"HTTP {status}: {text[:300]!r}", status
    if status in (503, 504):
        # Allowed only when the backend itself said so (UNAVAILABLE: e.g. no PulseAudio on a
        # zone's server) or the call waits by design; the gateway's own 503 for a backend
        # that is up is a failure.
        if status == 504 and (rpc.full_name in WAITING or rpc.streaming):
            return None, status
        backend = rpc.service if rpc.service in BACKENDS else None
        if backend and house.alive(backend) and b"UNAVAILABLE" in text and status == 503:
            return None, status
        return f"HTTP {status}: {text[:300]!r}", status
    return None, status


def house_token() -> str:
    return AUTH[0][1].removeprefix("Bearer ")


def call_problem(house: House, door: str, rpc: Rpc, request: Message) -> tuple[str | None, str]:
    if door == "http":
        return http_problem(house, rpc, request)
    return grpc_problem(house, door, rpc, request)


_RUN = re.compile(r"(\\[0-7]{3}|\\.|.)\1{49,}")


def show(request: Message) -> str:
    """A request as protobuf text (one line, escaped; text_format.Parse reads it back), with
    runs of 50 or more identical characters written as ``<'c' x N>`` to keep it readable."""
    text = text_format.MessageToString(request, as_one_line=True, as_utf8=True)
    text = _RUN.sub(lambda m: f"<{m.group(1)!r} x {len(m.group(0)) // len(m.group(1))}>", text)
    return f"{request.DESCRIPTOR.full_name} {{{text}}}"


class Shown:
    """A generated request that hypothesis prints as :func:`show` does (not 70 kB long)."""

    def __init__(self, message: Message) -> None:
        self.message = message

    def __repr__(self) -> str:
        return show(self.message)


def processes_of(rpc: Rpc, door: str) -> list[str]:
    names = [rpc.service] if rpc.service in BACKENDS else []
    if door in GATEWAYS:
        names.append(door)
    elif door == "http":
        names.append("edge")
    elif rpc.service == "gateway":
        names.extend(GATEWAYS)
    return names


# ------------------------------------------------------------------------------ tests


def test_discovered_rpcs_are_every_method_the_services_serve(house: House) -> None:
    """The descriptors' RPCs are exactly the hearth methods the running services list by
    reflection (the gateway's own service from a gateway)."""
    served: set[str] = set()
    for name in (*BACKENDS, "python"):
        database = ProtoReflectionDescriptorDatabase(house.channel(name))
        for service in database.get_services():
            if not service.startswith("hearth."):
                continue
            if name == "python" and not service.startswith("hearth.gateway."):
                continue  # the gateway also proxies the backends' services
            descriptor = database.FindFileContainingSymbol(service)
            for svc in descriptor.service:
                if f"{descriptor.package}.{svc.name}" == service:
                    served.update(f"{service}/{m.name}" for m in svc.method)
    discovered = {rpc.full_name for rpc in RPCS}
    assert discovered == served
    assert {rpc.service for rpc in RPCS} == {*BACKENDS, "gateway"}


@pytest.mark.parametrize(("rpc", "door"), _params())
def test_generated_requests_keep_the_contract(house: House, rpc: Rpc, door: str) -> None:
    house.seed()
    names: list[str] = []
    valid: dict[str, list[Message]] = {}
    if rpc.service in BACKENDS:
        for item in list_messages(house, rpc.service):
            names.append(item.name)
            valid.setdefault(item.DESCRIPTOR.full_name, []).append(item)
        for request in house.seed_requests(rpc.service):
            valid.setdefault(request.DESCRIPTOR.full_name, []).append(request)
        if rpc.service == "wake":
            names.append("hosts/-")
    watched = processes_of(rpc, door)
    since = {name: len(house.procs[name].lines) for name in watched}
    finding = FINDINGS.get(rpc.full_name)
    known = bool(finding and door in finding.doors)
    stats = {"examples": 0, "failures": 0, "known_finding": int(known)}

    def check(request: Message) -> None:
        stats["examples"] += 1
        writes = rpc.service in BACKENDS and rpc.method.name.startswith(WRITES)
        before = stored_settings(house, rpc.service) if writes else {}
        lines = {name: len(house.procs[name].lines) for name in watched}
        problem, outcome = call_problem(house, door, rpc, request)
        stats[outcome] = stats.get(outcome, 0) + 1
        if writes and not problem and outcome in REJECTED:
            after = stored_settings(house, rpc.service)
            if after != before:
                changed = sorted(k for k in {*before, *after} if before.get(k) != after.get(k))
                problem = f"rejected with {outcome}, yet stored items changed: {changed[:5]}"
        for name in watched:
            bad_lines = house.log_problems(name, lines[name], KNOWN_LOG_FINDINGS)
            if bad_lines and not problem:
                problem = f"{name} logged: " + "; ".join(bad_lines[:3])
        dead = [name for name in watched if not house.alive(name)]
        if dead:
            problem = (problem or "") + f" process(es) died: {dead}"
        if problem:
            stats["failures"] += 1
            raise AssertionError(f"{door} {rpc.full_name}: {problem}\n  request: {show(request)}")

    try:
        if finding and known:
            for text in finding.requests:
                check(text_format.Parse(text, rpc.request_class()))

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )
        @given(message_strategy(rpc.method.input_type, names, valid=valid).map(Shown))
        def run(request: Shown) -> None:
            check(request.message)

        run()
        for name in watched:
            bad_lines = house.log_problems(name, since[name], KNOWN_LOG_FINDINGS)
            assert not bad_lines, f"{name} logged after {rpc.full_name} via {door}: " + "\n".join(
                bad_lines[:5]
            )
        for name in watched:
            assert house.wait_serving(name), (
                f"{name} not SERVING after {rpc.full_name} via {door}:\n"
                + house.log_excerpt(name, since[name])
            )
    except AssertionError as exc:
        # A note keeps hypothesis' own (the falsifying example, @reproduce_failure).
        for name in watched:
            exc.add_note(f"--- {name} log:\n{house.log_excerpt(name, since[name])}")
        raise
    finally:
        figures.record("rpcs", f"{door} {rpc.full_name}", stats)


def huge_request(rpc: Rpc, size: int = 70_000) -> Message:
    """The RPC's request with every top-level string field (and a message's name) huge."""
    request = rpc.request_class()
    for f in request.DESCRIPTOR.fields:
        if f.type == f.TYPE_STRING and not f.is_repeated:
            setattr(request, f.name, "a" * size)
        elif f.type == f.TYPE_MESSAGE and not f.is_repeated:
            sub = getattr(request, f.name)
            if "name" in sub.DESCRIPTOR.fields_by_name:
                sub.name = "a" * size
    return request


def test_http_face_refuses_an_overlong_request_line_quietly(house: House) -> None:
    """A 9 000-byte request line: a 4xx answer, and no ERROR entry or traceback in the
    gateway's log (a client could otherwise fill the log with one line of its choosing)."""
    host, _, port = house.http["edge"].rpartition(":")
    since = len(house.procs["edge"].lines)
    conn = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT)
    try:
        conn.request("GET", "/v1/streams/" + "a" * 9000, headers={"Authorization": "Bearer x"})
        status = conn.getresponse().status
    finally:
        conn.close()
    assert 400 <= status < 500
    time.sleep(0.5)  # the log line, if any, is written as the connection closes
    assert not house.log_problems("edge", since)
    assert not [line for line in house.procs["edge"].lines[since:] if " ERROR " in line]


FORGED_TOKENS = ['{"o":Infinity,"c":""}', '{"o":-Infinity}', '{"o":1e400}', '{"o":NaN}', "[]"]


@pytest.mark.parametrize("door", ["direct", *GATEWAYS])
def test_forged_page_tokens_get_invalid_argument(house: House, door: str) -> None:
    """Page tokens shaped like the services' own (base64 of JSON) with an offset that is not
    a number: INVALID_ARGUMENT naming page_token, for every RPC that takes one. Regression
    test of a finding of this harness (fixed in hearth_runtime.resources)."""
    problems = []
    for rpc in RPCS:
        fields = rpc.method.input_type.fields_by_name
        if "page_token" not in fields or (door == "direct" and rpc.service == "gateway"):
            continue
        for doc in FORGED_TOKENS:
            token = base64.urlsafe_b64encode(doc.encode()).decode().rstrip("=")
            request = rpc.request_class(page_token=token)
            if "parent" in fields:
                request.parent = "hosts/-"
            problem, outcome = grpc_problem(house, door, rpc, request)
            if problem or outcome != "INVALID_ARGUMENT":
                problems.append(f"{rpc.full_name} {doc}: {problem or outcome}")
    assert not problems, "\n".join(problems)


# A write rejected with one of these must leave the stored items as they were.
WRITES = ("Create", "Update", "Delete", "Enable", "Disable", "Subscribe", "Unsubscribe")
REJECTED = {
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "HTTP_400",
    "HTTP_404",
    "HTTP_409",
    "HTTP_413",
    "HTTP_414",
    "HTTP_429",
}


def stored_settings(house: House, service: str) -> dict[str, str]:
    """The stored items of ``service`` other than wake history, name -> settings."""
    return {
        name: text for name, text in list_items(house, service).items() if "/wakes/" not in name
    }


@pytest.mark.parametrize("door", ["direct", *GATEWAYS])
def test_huge_strings_get_a_readable_status(house: House, door: str) -> None:
    """A 70 000-character value in every string field of every request: the answer is the
    service's own status (its message may quote the value, but not so much that the client
    drops the trailers), and a gateway does not call the backend down for it. Regression
    test of the first finding of this harness (fixed in hearth_runtime.errors)."""
    problems = []
    for rpc in RPCS:
        if door == "direct" and rpc.service == "gateway":
            continue
        problem, _ = grpc_problem(house, door, rpc, huge_request(rpc))
        if problem:
            problems.append(f"{rpc.full_name}: {problem}")
    assert not problems, "\n".join(problems)


LIST_CALLS: dict[str, list[tuple[str, dict[str, str], str]]] = {
    "wake": [("ListHosts", {}, "hosts"), ("ListWakes", {"parent": "hosts/-"}, "wakes")],
    "audio": [("ListStreams", {}, "streams"), ("ListZones", {}, "zones")],
    "ci": [("ListWatches", {}, "watches")],
}


def list_items(house: House, service: str) -> dict[str, str]:
    """Every stored item of ``service``, name -> its configuration as text (every page)."""
    items: dict[str, str] = {}
    for item in list_messages(house, service):
        # A wake is history that a restart may end (IN_PROGRESS -> INTERRUPTED, as
        # wake.proto says): it must still be there; stored settings must be equal.
        wake = item.DESCRIPTOR.full_name == "hearth.wake.v1.Wake"
        items[item.name] = "" if wake else configuration(item)
    return items


def list_messages(house: House, service: str) -> list[Any]:
    """Every stored item of ``service`` (every page of every List call)."""
    items: list[Any] = []
    by_name = {rpc.method.name: rpc for rpc in RPCS if rpc.service == service}
    for method, extra, repeated in LIST_CALLS[service]:
        rpc = by_name[method]
        token = ""
        for _ in range(1000):
            request = rpc.request_class(page_size=100, page_token=token, **extra)
            reply = house.channel(service).unary_unary(
                rpc.path,
                request_serializer=rpc.request_class.SerializeToString,
                response_deserializer=rpc.response_class.FromString,
            )(request, timeout=10)
            items.extend(getattr(reply, repeated))
            token = reply.next_page_token
            if not token:
                break
        else:
            raise AssertionError(f"{method}: more than 1000 pages")
    return items


# Fields that change on their own (state, clocks, probes): not part of what must survive.
VOLATILE = {
    "state",
    "state_since",
    "last_seen",
    "status",
    "update_time",
    "effective_interface",
    "outcome",
    "alive_time",
    "followed_up",
}


def configuration(item: Message) -> str:
    copy = type(item)()
    copy.CopyFrom(item)
    for name in VOLATILE:
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return text_format.MessageToString(copy, as_one_line=True)


def test_memory_bounded_serving_and_every_item_loads_after_restart(house: House) -> None:
    """After the fuzz run: every process alive and SERVING, peak RSS within bounds; then
    every process restarted on its state directory: all start, every stored item loads."""
    problems = []
    for name in house.procs:
        if not house.alive(name):
            problems.append(f"{name} died:\n{house.log_excerpt(name, 0)}")
        elif not house.wait_serving(name):
            problems.append(f"{name} not SERVING: {house.health(name)}")
    assert not problems, problems
    for name in house.measured():
        peak = house.peak_rss_kib(name)
        figures.record(
            "peak_rss_kib",
            name,
            {"baseline": house.baseline_kib[name], "peak": peak},
            how="max",
        )
        if peak - house.baseline_kib[name] > RSS_GROWTH_LIMIT_KIB:
            problems.append(f"{name}: peak RSS {peak} KiB, {house.baseline_kib[name]} at start")
    assert not problems, problems

    before = {service: list_items(house, service) for service in BACKENDS}
    stored = sum(len(items) for items in before.values())
    house.restart_all()
    after = {service: list_items(house, service) for service in BACKENDS}
    for service in BACKENDS:
        lost = sorted(set(before[service]) - set(after[service]))
        assert not lost, f"{service}: lost after restart: {lost[:10]}"
        changed = [
            n
            for n in before[service]
            if n in after[service] and before[service][n] != after[service][n]
        ]
        diffs = [(n, before[service][n], after[service][n]) for n in changed[:3]]
        assert not changed, f"{service}: changed by a restart: {diffs}"
        quarantine = [line for line in house.procs[service].lines if "quarantin" in line.lower()]
        assert not quarantine, f"{service}: quarantined items after restart: {quarantine[:5]}"
    figures.record("restart", "stored_items", {"items": stored}, how="set")
    figures.record("totals", "fuzz", {"stored_items_checked_after_restart": stored}, how="set")
