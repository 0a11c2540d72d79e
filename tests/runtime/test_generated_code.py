"""Generated gRPC code must match protos/ (it is generated at install, never committed)."""

import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _files() -> list[Any]:
    from hearth.audio.v1 import audio_pb2
    from hearth.ci.v1 import ci_pb2
    from hearth.gateway.v1 import gateway_pb2
    from hearth.wake.v1 import wake_pb2

    return [m.DESCRIPTOR for m in (wake_pb2, audio_pb2, ci_pb2, gateway_pb2)]


def test_every_rpc_has_an_http_binding_and_every_enum_starts_unspecified() -> None:
    from google.api import annotations_pb2

    rpcs = 0
    for file in _files():
        for service in file.services_by_name.values():
            for method in service.methods:
                assert method.GetOptions().HasExtension(annotations_pb2.http), method.full_name
                assert not method.client_streaming, f"{method.full_name}: no client streams"
                rpcs += 1
        enums = list(file.enum_types_by_name.values())
        messages = list(file.message_types_by_name.values())
        while messages:
            message = messages.pop()
            enums += message.enum_types
            messages += message.nested_types
        for enum in enums:
            zero = enum.values_by_number[0].name
            assert zero.endswith("UNSPECIFIED"), f"{enum.full_name}: value 0 is {zero}"
    assert rpcs >= 38  # wake 9, audio 19, ci 8, gateway 2 at the time of writing


def test_resources_have_a_name_and_lists_page() -> None:
    for file in _files():
        for service in file.services_by_name.values():
            for method in service.methods:
                if method.name.startswith("List"):
                    fields = method.input_type.fields_by_name
                    assert {"page_size", "page_token"} <= set(fields), method.full_name
                    assert "next_page_token" in method.output_type.fields_by_name
                if method.name.startswith("Update"):
                    assert "update_mask" in method.input_type.fields_by_name, method.full_name
                if method.name.startswith(("Get", "Create", "Update")) and method.name not in (
                    "GetSystemStatus",
                    "GetPlayer",
                    "GetDashboard",
                ):
                    assert "name" in method.output_type.fields_by_name, method.full_name
