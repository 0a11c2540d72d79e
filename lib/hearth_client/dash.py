"""The ci terminal dashboard: `hearth ci dash` (and `python -m hearth_ci.dash`).

Same options as the tool it replaces (``-u -P -r -o -c -t -q -w -s -p -O -Q -Z -G``), e.g.
``dash -u danms -p openstack/nova -r 30 -s -O OR -o danms``. It reads the ci service
(``--service HOST:PORT``, the default, or the gateway's address) over gRPC. Redraws in place
every ``-r`` seconds; Ctrl-C exits cleanly. Reading Zuul and Gerrit directly (``--zuul URL``)
needs the ci service's own code: ``python -m hearth_ci.dash`` passes it in as a ``direct``
source (:func:`make_app`); this module imports no server package.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, NoReturn, Protocol, TextIO

import grpc
import typer
from google.protobuf import json_format

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_runtime import InvalidArgument, ports
from hearth_runtime.text import neutral

RESET, BOLD = "\x1b[0m", "\x1b[1m"
RED, GREEN, YELLOW, LIGHT_BLUE = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[94m"
BANNER = "\x1b[1;37;41m"  # bold white on red
HOME, CLEAR_LINE, CLEAR_BELOW, CLEAR_SCREEN = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[2J"
CI_ADDRESS = ports.local_address("ci", "127.0.0.1")


@dataclass
class DashOptions:
    user: str = ""
    password: str = ""
    refresh: float = 30.0
    owners: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    topic: str = ""
    query: str = ""
    watched: bool = False
    starred: bool = False
    projects: str = ""
    operator: str = "OR"
    ignore: list[str] = field(default_factory=list)
    dump_zuul: bool = False
    dump_gerrit: bool = False
    service: str = CI_ADDRESS
    watch: str = ""
    zuul: str = ""
    tenant: str = ""
    gerrit: str = ""
    color: bool | None = None  # None: when stdout is a terminal

    def filter(self) -> ci_pb2.Filter:
        """The ci Filter for these options (INVALID_ARGUMENT naming the option otherwise)."""
        flt = ci_pb2.Filter(
            user=self.user,
            owners=self.owners,
            changes=self.changes,
            topic=self.topic,
            query=self.query,
            watched=self.watched,
            starred=self.starred,
            projects=[p.strip() for p in self.projects.split(",") if p.strip()],
            operator=parse_operator(self.operator, "-O/--operator"),  # type: ignore[arg-type]
            ignored_pipelines=self.ignore,
        )
        return flt


def parse_operator(text: str, field: str = "operator") -> int:
    """ "AND"/"OR" (any case, with or without the OPERATOR_ prefix) -> the enum; anything
    else is INVALID_ARGUMENT."""
    upper = text.strip().upper().removeprefix("OPERATOR_")
    if upper == "AND":
        return int(ci_pb2.OPERATOR_AND)
    if upper == "OR":
        return int(ci_pb2.OPERATOR_OR)
    raise InvalidArgument(field, f"unknown operator {text!r} (use AND or OR)")


# ------------------------------------------------------------------------- rendering


def _span(ms: float) -> str:
    seconds = int(max(0, ms) // 1000)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _backlog_colour(length: int) -> str:
    if length > 20:
        return RED
    if length > 10:
        return YELLOW
    return ""


def _upstream(value: int) -> str:
    """UPSTREAM_ZUUL -> "zuul" (an unknown number as the number)."""
    if value not in ci_pb2.Upstream.values():
        return str(value)
    return ci_pb2.Upstream.Name(value).removeprefix("UPSTREAM_").lower()  # type: ignore[arg-type]


def _item_colour(item: ci_pb2.Item) -> str:
    if item.status == ci_pb2.ITEM_STATUS_FAILING:
        return RED
    if item.status == ci_pb2.ITEM_STATUS_BEHIND_FAILURE:
        return YELLOW
    if item.own:
        return GREEN
    if item.starred:
        return LIGHT_BLUE
    return ""


def item_line(item: ci_pb2.Item, now_ms: float) -> str:
    """``(change,ps) subject (time-in-queue/job-string/rem:ETA)`` and what it is behind."""
    spent = _span(now_ms - item.enqueue_time.ToMilliseconds()) if item.enqueue_time.seconds else "?"
    eta = f"rem:{_span(item.eta.ToMilliseconds())}" if item.HasField("eta") else "rem:?"
    position = f"{item.position:>3}. " if item.position else "     "
    subject = neutral(item.subject or item.project, 200)
    jobs = neutral(item.job_string, 400)
    line = f"{position}({neutral(item.change, 40)}) {subject} ({spent}/{jobs}/{eta})"
    if item.status == ci_pb2.ITEM_STATUS_BEHIND_FAILURE:
        what = neutral(item.behind_change or "a failing change", 80)
        job = f" ({neutral(item.behind_job, 200)})" if item.behind_job else ""
        line += f" behind {what}{job}"
    if item.warning:
        line += f" [{neutral(item.warning, 200)}]"
    return line


def render(
    dash: ci_pb2.Dashboard, now: float | None = None, colour: bool = True, error: str = ""
) -> list[str]:
    """The screen as lines (with ANSI colours when ``colour``). Every text that came from
    the service or an upstream goes through ``neutral``: only our own colour codes reach
    the terminal, never an escape sequence in a project name or a commit subject."""

    def paint(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if colour and code else text

    now = time.time() if now is None else now
    now_ms = now * 1000
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    lines = [paint(BOLD, f"Zuul dashboard: {neutral(dash.filter_description, 400)}   {clock}")]
    if dash.zuul.message:
        lines.append(paint(BANNER, f" {neutral(dash.zuul.message, 400)} "))
    trigger = dash.zuul.event_queues.get("trigger", 0)
    if trigger > 5:
        others = ", ".join(
            f"{neutral(k, 64)} {v}"
            for k, v in sorted(dash.zuul.event_queues.items())
            if k != "trigger"
        )
        text = f"Event backlog: trigger {trigger}" + (f" ({others})" if others else "")
        lines.append(paint(_backlog_colour(trigger), text))
    if error:
        lines.append(paint(YELLOW, neutral(error, 400)))
    for source in dash.sources:
        if source.failed_attempts:
            since = ""
            if source.last_success.seconds:
                since = f"; showing data from {_span(source.data_age.ToMilliseconds())} ago"
            lines.append(
                paint(
                    YELLOW,
                    f"{source.failed_attempts} failed attempts ({_upstream(source.source)}: "
                    f"{neutral(source.error, 300)}){since}",
                )
            )
        elif not source.ok and source.error:
            lines.append(paint(YELLOW, f"{_upstream(source.source)}: {neutral(source.error, 300)}"))
    for pipeline in dash.pipelines:
        for queue in pipeline.queues:
            label = neutral(pipeline.name, 100)
            if len(pipeline.queues) > 1:
                label += f": {neutral(queue.name, 40)}"
            lines.append("")
            lines.append(paint(BOLD, f"Queue: {label} ({len(queue.items)}/{queue.total})"))
            for item in queue.items:
                lines.append(paint(_item_colour(item), item_line(item, now_ms)))
    if not dash.pipelines:
        lines.extend(["", "No matching changes in any pipeline."])
    return lines


# ------------------------------------------------------------------------- sources


class Source(Protocol):
    """Where the dashboard comes from: the ci service here, Zuul and Gerrit directly in
    ``hearth_ci.dash``."""

    description: str  # the filter's description, shown before the first answer

    async def dashboard(self) -> ci_pb2.Dashboard: ...

    async def dumps(self) -> list[Any]: ...

    async def close(self) -> None: ...


# A direct source made from the options and their filter (None: the options' -O is invalid).
DirectFactory = Callable[[DashOptions, ci_pb2.Filter], Source]


class ServiceSource:
    """The ci service (or the gateway forwarding it) over gRPC."""

    def __init__(self, options: DashOptions, flt: ci_pb2.Filter) -> None:
        self.options = options
        self.channel = grpc.aio.insecure_channel(options.service)
        self.stub = ci_pb2_grpc.CiServiceStub(self.channel)
        # Through the gateway, reading needs a viewer token unless anonymous read is on.
        token = os.environ.get("HEARTH_TOKEN", "")
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        watch = options.watch
        if watch and not watch.startswith("watches/"):
            watch = f"watches/{watch}"
        self.request = (
            ci_pb2.GetDashboardRequest(watch=watch)
            if watch
            else ci_pb2.GetDashboardRequest(filter=flt)
        )
        # The service describes (and validates) the filter: until it answers, the watch.
        self.description = watch

    async def dashboard(self) -> ci_pb2.Dashboard:
        reply: ci_pb2.Dashboard = await self.stub.GetDashboard(
            self.request, timeout=15, metadata=self.metadata
        )
        return reply

    async def dumps(self) -> list[Any]:
        out: list[Any] = []
        if self.options.dump_zuul:
            reply = await self.stub.ListPipelines(
                ci_pb2.ListPipelinesRequest(), timeout=15, metadata=self.metadata
            )
            out.append(json_format.MessageToDict(reply))
        if self.options.dump_gerrit:
            out.append(json_format.MessageToDict(await self.dashboard()))
        return out

    async def close(self) -> None:
        await self.channel.close()


# ------------------------------------------------------------------------- the loop


def _hand_over_to_direct_dash() -> NoReturn:
    """`hearth ci dash --zuul ...` keeps the original tool's option: the same arguments run as
    `python -m hearth_ci.dash`, which holds the ci service's code that reading Zuul and Gerrit
    needs (the client imports no server: the import contract in pyproject.toml)."""
    if importlib.util.find_spec("hearth_ci") is None:
        raise InvalidArgument("--zuul", "reading Zuul directly needs hearth-ci installed here")
    argv = sys.argv
    at = next((i for i in range(1, len(argv)) if argv[i - 1 : i + 1] == ["ci", "dash"]), None)
    if at is None:  # not run as `hearth ci dash`: nothing to hand over
        raise InvalidArgument("--zuul", "reading Zuul directly is python -m hearth_ci.dash")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "hearth_ci.dash", *argv[at + 1 :]])


async def _loop(options: DashOptions, out: TextIO, direct: DirectFactory | None) -> int:
    flt = options.filter()
    source: Source
    if options.zuul:
        if direct is None:
            _hand_over_to_direct_dash()
        source = direct(options, flt)
    else:
        source = ServiceSource(options, flt)
    colour = out.isatty() if options.color is None else options.color
    try:
        if options.dump_zuul or options.dump_gerrit:
            for doc in await source.dumps():
                out.write(json.dumps(doc, indent=2) + "\n")
            return 0
        last: ci_pb2.Dashboard | None = None
        failures = 0
        first = True
        while True:
            error = ""
            try:
                last = await source.dashboard()
                failures = 0
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                    sys.stderr.write(f"dash: {exc.details()}\n")
                    return 2
                if exc.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    # Retrying will not help: the token is missing or lacks the role.
                    sys.stderr.write(
                        f"dash: {exc.code().name}: {exc.details()} "
                        "(set HEARTH_TOKEN to a viewer token)\n"
                    )
                    return 2
                failures += 1
                error = f"{failures} failed attempts (ci service: {exc.details()})"
            dash = last or ci_pb2.Dashboard(filter_description=source.description)
            lines = render(dash, colour=colour, error=error)
            if options.refresh <= 0:
                out.write("\n".join(lines) + "\n")
                out.flush()
                return 0
            screen = (CLEAR_SCREEN if first else "") + HOME
            screen += "".join(line + CLEAR_LINE + "\n" for line in lines) + CLEAR_BELOW
            out.write(screen)
            out.flush()
            first = False
            await asyncio.sleep(options.refresh)
    finally:
        await source.close()


def run_dash(
    options: DashOptions, out: TextIO | None = None, direct: DirectFactory | None = None
) -> int:
    """Run the dashboard until Ctrl-C (or once with refresh 0); the exit code."""
    stream = out or sys.stdout
    try:
        return asyncio.run(_loop(options, stream, direct))
    except InvalidArgument as exc:
        sys.stderr.write(f"dash: {exc.message}\n")
        return 2
    except KeyboardInterrupt:
        stream.write(RESET + "\n")
        stream.flush()
        return 0


def make_command(direct: DirectFactory | None = None) -> Callable[..., None]:
    """The `dash` command; with ``direct``, ``--zuul`` reads Zuul and Gerrit directly."""

    def dash(
        user: Annotated[
            str, typer.Option("-u", "--user", help="Gerrit user (default filter: owner)")
        ] = "",
        password: Annotated[str, typer.Option("-P", "--passwd", help="Gerrit HTTP password")] = "",
        refresh: Annotated[float, typer.Option("-r", "--refresh", help="seconds; 0 = once")] = 30.0,
        owner: Annotated[
            list[str] | None, typer.Option("-o", "--owner", help="changes owned by (repeatable)")
        ] = None,
        change: Annotated[
            list[str] | None, typer.Option("-c", "--change", help="change number (repeatable)")
        ] = None,
        topic: Annotated[str, typer.Option("-t", "--topic")] = "",
        query: Annotated[str, typer.Option("-q", "--query", help="raw Gerrit query")] = "",
        watched: Annotated[
            bool, typer.Option("-w", "--watched", help="changes in watched projects")
        ] = False,
        starred: Annotated[bool, typer.Option("-s", "--starred", help="starred changes")] = False,
        projects: Annotated[
            str, typer.Option("-p", "--projects", help="comma-separated, ORed")
        ] = "",
        operator: Annotated[
            str, typer.Option("-O", "--operator", help="AND or OR between groups")
        ] = "OR",
        ignore: Annotated[
            list[str] | None, typer.Option("-Q", "--ignore-pipeline", help="(repeatable)")
        ] = None,
        dump_zuul: Annotated[
            bool, typer.Option("-Z", "--dump-zuul", help="dump raw Zuul data")
        ] = False,
        dump_gerrit: Annotated[
            bool, typer.Option("-G", "--dump-gerrit", help="dump raw Gerrit data")
        ] = False,
        service: Annotated[
            str, typer.Option("--service", help="ci service or gateway")
        ] = CI_ADDRESS,
        watch: Annotated[
            str, typer.Option("--watch", help="use a stored watch of the service")
        ] = "",
        zuul: Annotated[
            str,
            typer.Option(
                "--zuul", help="read Zuul directly (web root URL; python -m hearth_ci.dash)"
            ),
        ] = "",
        tenant: Annotated[str, typer.Option("--tenant", help="Zuul 3+ tenant (none: Zuul 2)")] = "",
        gerrit: Annotated[
            str, typer.Option("--gerrit", help="read Gerrit directly (web root URL)")
        ] = "",
        color: Annotated[
            bool | None, typer.Option("--color/--no-color", help="default: on a tty")
        ] = None,
    ) -> None:
        """Where my changes are in Zuul, live."""
        options = DashOptions(
            user=user,
            password=password,
            refresh=refresh,
            owners=owner or [],
            changes=change or [],
            topic=topic,
            query=query,
            watched=watched,
            starred=starred,
            projects=projects,
            operator=operator,
            ignore=ignore or [],
            dump_zuul=dump_zuul,
            dump_gerrit=dump_gerrit,
            service=service,
            watch=watch,
            zuul=zuul,
            tenant=tenant,
            gerrit=gerrit,
            color=color,
        )
        raise typer.Exit(run_dash(options, direct=direct))

    return dash


dash = make_command()
app = typer.Typer(add_completion=False, help=__doc__)
app.command()(dash)


if __name__ == "__main__":
    app()
