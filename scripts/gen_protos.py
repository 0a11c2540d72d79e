#!/usr/bin/env python3
"""Generate Python code for protos/ into gen/ (never committed; `make proto` runs this).

``--check`` regenerates into a temporary folder and fails if gen/ differs (stale code).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"


def generate(out: Path) -> None:
    import google.api  # googleapis-common-protos ships google/api/*.proto beside its modules
    import grpc_tools
    from grpc_tools import protoc

    common = Path(google.api.__path__[0]).parent.parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    # protoc-gen-mypy lives beside this interpreter (the project's virtualenv).
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{common}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    # mypy-protobuf prints a line per file on stderr; keep it quiet unless protoc fails.
    with tempfile.TemporaryFile("w+") as chatter:
        saved = os.dup(2)
        os.dup2(chatter.fileno(), 2)
        try:
            code = protoc.main(args)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if code != 0:
            chatter.seek(0)
            sys.exit("protoc failed:\n" + chatter.read())
    # Regular packages (with __init__.py) so setuptools and mypy find them.
    for directory in [out / "hearth", *(p for p in (out / "hearth").rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()


def _tree(base: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(base)): p
        for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != ".stamp"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if gen/ is stale")
    args = parser.parse_args()
    if not args.check:
        generate(GEN)
        print(f"generated {len(_tree(GEN))} files into {GEN.relative_to(ROOT)}/")
        return
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        have, want = _tree(GEN), _tree(fresh)
        stale = sorted(set(have) ^ set(want))
        stale += sorted(
            k for k in set(have) & set(want) if not filecmp.cmp(have[k], want[k], shallow=False)
        )
        if stale:
            sys.exit("generated code is stale (run `make proto`): " + ", ".join(stale))
    print("generated code is up to date")


if __name__ == "__main__":
    main()
