"""`hearth`: the command-line client. Commands talk to the gateway over gRPC.

The gateway's address and your token come from ``--gateway``/``--token``, then
``HEARTH_GATEWAY``/``HEARTH_TOKEN``, then ``~/.config/hearth/config.yaml``. Shell completion:
``hearth --install-completion``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf import duration_pb2, field_mask_pb2
from rich.console import Console
from rich.table import Table

from hearth.audio.v1 import audio_pb2, audio_pb2_grpc
from hearth.auth.v1 import policy_pb2
from hearth.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from hearth.wake.v1 import wake_pb2, wake_pb2_grpc
from hearth_cli.client import CliError, Settings, explain
from hearth_client.dash import dash
from hearth_client.tokens import hash_token, new_token
from hearth_runtime.timeconv import duration_from_seconds, seconds_of
from hearth_runtime.version import VERSION

app = typer.Typer(help=__doc__, no_args_is_help=True)
hosts_app = typer.Typer(help="The machines wake keeps reachable.", invoke_without_command=True)
audio_app = typer.Typer(help="Whole-house audio: streams, zones, the player.", no_args_is_help=True)
ci_app = typer.Typer(help="Where your changes are in Zuul.", no_args_is_help=True)
app.add_typer(hosts_app, name="hosts")
app.add_typer(audio_app, name="audio")
app.add_typer(ci_app, name="ci")

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


class State:
    settings: Settings | None = None


def settings() -> Settings:
    if State.settings is None:
        State.settings = Settings.resolve(None, None)
    return State.settings


def call(fn: Callable[..., T], request: Any, timeout: float | None = 15.0) -> T:
    """One gateway call with the token; a readable error and exit 1 when it fails."""
    s = settings()
    try:
        return fn(request, metadata=s.metadata(), timeout=timeout)
    except grpc.RpcError as exc:
        fail(explain(exc, s))
        raise  # unreachable: fail() exits


def fail(error: CliError) -> None:
    errors.print(f"[bold red]error:[/] {error}", highlight=False)
    raise typer.Exit(error.code)


def stub(kind: type[T]) -> T:
    return kind(settings().channel())  # type: ignore[call-arg]


def word(enum: Any, value: int) -> str:
    """An enum value's name without its enum's prefix: HOST_STATE_AWAKE -> AWAKE (unknown
    numbers as the number)."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.DESCRIPTOR.name).upper() + "_"
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return str(value)


def short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def span(duration: duration_pb2.Duration) -> str:
    seconds = seconds_of(duration)
    if not seconds:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


@app.callback()
def main(
    gateway: Annotated[
        str | None, typer.Option(help="gateway host:port (env HEARTH_GATEWAY)")
    ] = None,
    token: Annotated[str | None, typer.Option(help="bearer token (env HEARTH_TOKEN)")] = None,
) -> None:
    try:
        State.settings = Settings.resolve(gateway, token)
    except CliError as exc:
        fail(exc)


@app.command()
def version() -> None:
    """Print hearth's version."""
    typer.echo(f"hearth {VERSION}")


@app.command()
def status() -> None:
    """Each backend behind the gateway: up or down, version, round-trip time."""
    reply = call(
        stub(gateway_pb2_grpc.GatewayServiceStub).GetSystemStatus,
        gateway_pb2.GetSystemStatusRequest(),
    )
    role = word(policy_pb2.Role, reply.role).lower()
    table = Table(title=f"hearth gateway {reply.version} at {settings().gateway} ({role})")
    for column in ("backend", "address", "health", "version", "rtt", "error"):
        table.add_column(column)
    for b in reply.backends:
        status = word(gateway_pb2.HealthStatus, b.health)
        health = f"[green]{status}[/]" if b.up else f"[red]{status}[/]"
        table.add_row(b.name, b.address, health, b.version, span(b.round_trip), b.error)
    console.print(table)
    if not all(b.up for b in reply.backends):
        raise typer.Exit(3)


# ------------------------------------------------------------------------------- hosts

STATE_STYLE = {"AWAKE": "green", "ASLEEP": "dim", "WAKING": "yellow", "WAKE_FAILED": "red"}


@hosts_app.callback()
def hosts_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        hosts_ls()


@hosts_app.command("ls")
def hosts_ls() -> None:
    """List hosts with their state and when they were last seen."""
    wake = stub(wake_pb2_grpc.WakeServiceStub)
    table = Table()
    for column in ("host", "state", "mac", "ipv4", "last seen"):
        table.add_column(column)
    token = ""
    while True:
        page = call(wake.ListHosts, wake_pb2.ListHostsRequest(page_size=100, page_token=token))
        for h in page.hosts:
            state = word(wake_pb2.HostState, h.state)
            seen = (
                h.last_seen.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
                if h.last_seen.seconds
                else "never"
            )
            table.add_row(
                short(h.name), f"[{STATE_STYLE.get(state, '')}]{state}[/]", h.mac, h.ipv4, seen
            )
        token = page.next_page_token
        if not token:
            break
    console.print(table)


@hosts_app.command("add")
def hosts_add(
    name: Annotated[str, typer.Argument(help="host id, e.g. devbox")],
    mac: Annotated[str, typer.Option(help="MAC address")],
    ipv4: Annotated[str, typer.Option(help="IPv4 address")],
    ipv6: Annotated[str, typer.Option(help="IPv6 address")] = "",
    interface: Annotated[str, typer.Option(help="interface to watch and send on")] = "",
) -> None:
    """Add a host to keep reachable."""
    host = wake_pb2.Host(mac=mac, ipv4=ipv4, ipv6=ipv6, interface=interface)
    created = call(
        stub(wake_pb2_grpc.WakeServiceStub).CreateHost,
        wake_pb2.CreateHostRequest(host_id=name, host=host),
    )
    console.print(f"added {created.name}")


@hosts_app.command("rm")
def hosts_rm(name: Annotated[str, typer.Argument(help="host id")]) -> None:
    """Remove a host."""
    call(
        stub(wake_pb2_grpc.WakeServiceStub).DeleteHost,
        wake_pb2.DeleteHostRequest(name=f"hosts/{short(name)}"),
    )
    console.print(f"removed hosts/{short(name)}")


@app.command()
def wake(
    name: Annotated[str, typer.Argument(help="host id")],
    wait: Annotated[bool, typer.Option("--wait", help="return once the host is awake")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait at most with --wait")] = 90.0,
) -> None:
    """Send the magic packets now (with --wait: until the host answers)."""
    wake_stub = stub(wake_pb2_grpc.WakeServiceStub)
    host_name = f"hosts/{short(name)}"
    record = call(wake_stub.WakeHost, wake_pb2.WakeHostRequest(name=host_name))
    console.print(f"woke {host_name}: {record.packets_sent} packets ({record.name})")
    if not wait:
        return
    request = wake_pb2.WaitUntilAwakeRequest(name=host_name, wake=False)
    request.timeout.CopyFrom(duration_from_seconds(timeout))
    host = call(wake_stub.WaitUntilAwake, request, timeout=timeout + 5)
    state = word(wake_pb2.HostState, host.state)
    if host.state != wake_pb2.HOST_STATE_AWAKE:
        fail(CliError(f"{host_name} is {state} after {timeout:g} s", code=4))
    console.print(f"[green]{host_name} is awake[/]")


# ------------------------------------------------------------------------------- audio


def audio() -> audio_pb2_grpc.AudioServiceStub:
    return stub(audio_pb2_grpc.AudioServiceStub)


@audio_app.command("streams")
def audio_streams() -> None:
    """List streams (source, multicast group, state)."""
    reply = call(audio().ListStreams, audio_pb2.ListStreamsRequest(page_size=100))
    table = Table()
    for column in ("stream", "source", "group", "state"):
        table.add_column(column)
    for s in reply.streams:
        table.add_row(
            short(s.name), s.source, f"{s.group}:{s.port}", word(audio_pb2.StreamState, s.state)
        )
    console.print(table)


@audio_app.command("zones")
def audio_zones() -> None:
    """List zones with what they play and their volume."""
    reply = call(audio().ListZones, audio_pb2.ListZonesRequest(page_size=100))
    table = Table()
    for column in ("zone", "stream", "volume", "muted", "status"):
        table.add_column(column)
    for z in reply.zones:
        status = "[green]playing[/]" if z.status.receiving else (z.status.error or "idle")
        table.add_row(
            short(z.name),
            short(z.stream) or "-",
            f"{(z.volume if z.HasField('volume') else 1.0) * 100:.0f}%",  # unset = 100 %
            "yes" if z.muted else "",
            status,
        )
    console.print(table)


@audio_app.command("patch")
def audio_patch(
    zone: Annotated[str, typer.Argument(help="zone id")],
    stream: Annotated[str, typer.Argument(help="stream id, or 'none' to unsubscribe")],
) -> None:
    """Play STREAM in ZONE."""
    zone_name = f"zones/{short(zone)}"
    if stream == "none":
        call(audio().UnsubscribeZone, audio_pb2.UnsubscribeZoneRequest(name=zone_name))
        console.print(f"{zone_name} plays nothing")
        return
    reply = call(
        audio().SubscribeZone,
        audio_pb2.SubscribeZoneRequest(name=zone_name, stream=f"streams/{short(stream)}"),
    )
    console.print(f"{reply.name} plays {reply.stream}")


@audio_app.command("volume")
def audio_volume(
    zone: Annotated[str, typer.Argument(help="zone id")],
    percent: Annotated[float | None, typer.Argument(min=0, max=150, help="0-150 (%)")] = None,
    mute: Annotated[bool | None, typer.Option("--mute/--unmute")] = None,
) -> None:
    """Set a zone's volume (percent) and/or mute it."""
    z = audio_pb2.Zone(name=f"zones/{short(zone)}")
    paths = []
    if percent is not None:
        z.volume = percent / 100
        paths.append("volume")
    if mute is not None:
        z.muted = mute
        paths.append("muted")
    if not paths:
        fail(CliError("give a volume (0-150) and/or --mute/--unmute", code=2))
    reply = call(
        audio().UpdateZone,
        audio_pb2.UpdateZoneRequest(zone=z, update_mask=field_mask_pb2.FieldMask(paths=paths)),
    )
    console.print(f"{reply.name}: {reply.volume * 100:.0f}%{' (muted)' if reply.muted else ''}")


def _control(action: int) -> None:
    reply = call(audio().ControlPlayer, audio_pb2.ControlPlayerRequest(action=action))  # type: ignore[arg-type]
    song = reply.current_song
    what = f"{song.title or song.file} — {song.artist}" if song.file or song.title else "nothing"
    console.print(f"{word(audio_pb2.PlayerState, reply.state).lower()}: {what}")


@audio_app.command("play")
def audio_play() -> None:
    """Start or resume the player."""
    _control(audio_pb2.ControlPlayerRequest.ACTION_PLAY)


@audio_app.command("pause")
def audio_pause() -> None:
    """Pause the player."""
    _control(audio_pb2.ControlPlayerRequest.ACTION_PAUSE)


@audio_app.command("next")
def audio_next() -> None:
    """Skip to the next song."""
    _control(audio_pb2.ControlPlayerRequest.ACTION_NEXT)


# ------------------------------------------------------------------------------- ci


# `hearth ci dash ...`: the ci dashboard, options and all, reading the ci service or the gateway
# (with --zuul it hands the same arguments to `python -m hearth_ci.dash`, which reads Zuul and
# Gerrit directly).
ci_app.command("dash")(dash)


# ------------------------------------------------------------------------------- tokens

token_app = typer.Typer(help="Bearer tokens for the gateway.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Argument(help="who the token is for")],
    role: Annotated[str, typer.Option(help="viewer or operator")] = "viewer",
) -> None:
    """Make a token; paste the printed lines into the gateway's tokens: setting."""
    if role not in ("viewer", "operator"):
        fail(CliError("--role must be viewer or operator", code=2))
    token = new_token()
    console.print(f"token (give it to {name}, it is not stored anywhere): {token}")
    console.print("gateway config:", highlight=False)
    typer.echo(f"tokens:\n  - name: {name}\n    role: {role}\n    sha256: {hash_token(token)}")


if __name__ == "__main__":
    app()
