"""``python -m hearth_lab {list,sweep,check}``: inspect and clean up lab leftovers."""

import argparse
import sys

from hearth_lab import lab_available, list_labs, sweep_stale


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m hearth_lab", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="show labs on this machine (live and stale)")
    sub.add_parser("sweep", help="remove leftovers of labs whose process is gone")
    sub.add_parser("check", help="say whether labs can be built here")
    args = parser.parse_args(argv)
    if args.cmd == "check":
        ok, reason = lab_available()
        print("ok" if ok else f"unavailable: {reason}")
        return 0 if ok else 1
    if args.cmd == "list":
        labs = list_labs()
        for rec in labs:
            state = "live" if rec.alive else "STALE"
            print(f"{rec.id}\tpid={rec.pid}\t{state}")
            for ns in rec.namespaces:
                print(f"  netns {ns}")
            for link in rec.links:
                print(f"  link  {link}")
            if rec.workdir:
                print(f"  dir   {rec.workdir}")
        if not labs:
            print("no labs")
        return 0
    removed = sweep_stale()
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print("nothing stale")
    return 0


if __name__ == "__main__":
    sys.exit(main())
