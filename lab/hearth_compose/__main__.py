"""`make demo-compose`: the demo house in containers.

    python -m hearth_compose demo [--detach]   start the lab stack, fill it, print addresses
    python -m hearth_compose down              take the lab stack down (volumes too)
    python -m hearth_compose sweep             remove lab stacks left by crashed runs

The images must exist (`make images`). Without --detach, Ctrl-C takes everything down.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

import grpc

from hearth_compose.house import populate
from hearth_compose.stack import OPERATOR_TOKEN, LabStack, StackError, engine_reachable, sweep

SERVICES = ("gateway", "wake", "audio", "ci", "station", "zone-a", "zone-b", "replay")


def demo(stack: LabStack, detach: bool) -> None:
    print("starting the lab stack (a private network, nothing published) ...", flush=True)
    stack.up()
    stack.wait_healthy(SERVICES, within=180)
    with grpc.insecure_channel(stack.gateway_grpc) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        populate(channel)
    client = stack.container("client")[:12]
    print(
        f"""
hearth demo house in containers is up (project {stack.project})

  web page       {stack.gateway_http}/
  gateway gRPC   {stack.gateway_grpc}   (operator token: {OPERATOR_TOKEN})
  Prometheus     {stack.prometheus}/alerts
  the devbox sleeps: press Wake on the page, or wake it by wanting it:
                 docker exec {client} ping -c 1 -w 40 devbox
  the CLI        docker exec {client} hearth status
  zones          zone-a, zone-b: patch them on the page; the station plays radio (440 Hz)
                 and tv (880 Hz)
  CI             the replay server's Zuul queues, watch "mine"
""",
        flush=True,
    )
    if detach:
        print("left running: `python -m hearth_compose down` (or make down) removes it")
        return
    print("Ctrl-C takes it all down", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    print("taking the lab stack down ...", flush=True)
    stack.down()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m hearth_compose", description=__doc__)
    parser.add_argument("command", choices=("demo", "down", "sweep"))
    parser.add_argument("--detach", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    reason = engine_reachable()
    if reason:
        print(f"hearth_compose: {reason}", file=sys.stderr)
        return 1
    stack = LabStack()
    try:
        if args.command == "demo":
            demo(stack, args.detach)
        elif args.command == "down":
            stack.down()
        else:
            print("removed:", ", ".join(sweep()) or "nothing")
    except StackError as exc:
        print(f"hearth_compose: {exc}", file=sys.stderr)
        if args.command == "demo":
            stack.down()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
