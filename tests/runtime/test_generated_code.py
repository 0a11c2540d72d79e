"""Generated gRPC code must match protos/ (it is generated at install, never committed)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_every_proto_package_is_versioned_and_matches_its_folder() -> None:
    for proto in (ROOT / "protos" / "hearth").rglob("*.proto"):
        rel = proto.relative_to(ROOT / "protos").parent
        package = ".".join(rel.parts)
        assert f"package {package};" in proto.read_text(), proto
        assert rel.parts[-1].startswith("v") and rel.parts[-1][1:].isdigit(), proto
