#!/usr/bin/env python3
"""`make run`: every service as a local process with config/local/<service>.yaml."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from hearth_runtime.ports import HTTP_PORT
from hearth_testing import ServiceProcess

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("wake", "audio", "ci", "gateway")


def main() -> None:
    procs = []
    try:
        for name in ORDER:
            config = ROOT / "config" / "local" / f"{name}.yaml"
            proc = ServiceProcess(name, args=["--config", str(config)])
            procs.append(proc.start(timeout=60))
            print(
                f"{name:<8} gRPC {proc.grpc_address}  metrics http://{proc.metrics_address}/metrics"
            )
        print(f"web page  http://127.0.0.1:{HTTP_PORT}/   (Ctrl-C stops everything)")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
