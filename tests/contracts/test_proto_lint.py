"""scripts/lint_protos.py: hearth's contracts pass its AIP rules, and a contract that breaks
them is caught, rule by rule (the bad contract below breaks each one at a known place)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _lint_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lint_protos", ROOT / "scripts" / "lint_protos.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lint_protos"] = module
    spec.loader.exec_module(module)
    return module


lint = _lint_module()

BAD = """
syntax = "proto3";

// A contract that breaks every rule.
package hearth.bad.v1;

import "google/api/field_behavior.proto";
import "google/api/resource.proto";
import "google/protobuf/empty.proto";

// Things.
service ThingService {
  // Gets a thing.
  rpc GetThing(GetThingRequest) returns (Thing);
  rpc ListThings(ListThingsReq) returns (ThingPage);
  // Deletes a thing.
  rpc DeleteThing(DeleteThingRequest) returns (Thing);
  // Creates a thing.
  rpc CreateThing(CreateThingRequest) returns (Thing);
  // Gets the other.
  rpc GetOther(GetOtherRequest) returns (Other);
}

// A thing.
message Thing {
  option (google.api.resource) = {type: "things.example.com/Widget"};
  string name = 1 [(google.api.field_behavior) = IDENTIFIER];
  string Bad_Field = 2;
}

// An identifier name without a resource annotation.
message Other {
  string name = 1 [(google.api.field_behavior) = IDENTIFIER];
}

message GetThingRequest {
  string name = 1;
}

// Request of ListThings, badly named.
message ListThingsReq {
  // A reference to a type nobody declares, and not REQUIRED.
  string parent = 1 [(google.api.resource_reference) = {type: "bad.hearth.home/Nothing"}];
}

// A page without next_page_token.
message ThingPage {
  repeated Thing things = 1;
}

// Request of DeleteThing.
message DeleteThingRequest {
  // things/{thing}.
  string name = 1 [
    (google.api.field_behavior) = REQUIRED,
    (google.api.resource_reference) = {type: "things.example.com/Widget"}
  ];
}

// Request of CreateThing.
message CreateThingRequest {
  // The thing, not marked REQUIRED.
  Thing thing = 1;
}

// Request of GetOther.
message GetOtherRequest {
  // others/{other}.
  string name = 1 [
    (google.api.field_behavior) = REQUIRED,
    (google.api.resource_reference) = {type: "*"}
  ];
}

// A state.
enum state {
  ZERO = 0;
  state_on = 1;
  STATE = 2;
}

// Used and fine.
enum Color {
  COLOR_UNSPECIFIED = 0;
  COLOR_RED = 1;
}
"""

ODD = """
syntax = "proto3";

// A package without a version, in a folder that does not match it.
package hearth.odd;

// Nothing else.
message Fine {
  // A field.
  string text = 1;
}
"""

GOOD = """
syntax = "proto3";

// A contract that keeps every rule.
package hearth.good.v1;

import "google/api/field_behavior.proto";
import "google/api/resource.proto";
import "google/protobuf/empty.proto";

// Things.
service ThingService {
  // Gets a thing.
  rpc GetThing(GetThingRequest) returns (Thing);
  // Lists things.
  rpc ListThings(ListThingsRequest) returns (ListThingsResponse);
  // Deletes a thing.
  rpc DeleteThing(DeleteThingRequest) returns (google.protobuf.Empty);
}

// A thing.
message Thing {
  option (google.api.resource) = {type: "good.hearth.home/Thing" pattern: "things/{thing}"};
  // things/{thing}
  string name = 1 [(google.api.field_behavior) = IDENTIFIER];
  // What it is.
  Kind kind = 2;
}

// What a thing is.
enum Kind {
  KIND_UNSPECIFIED = 0;
  KIND_ROUND = 1;
}

// Request of GetThing.
message GetThingRequest {
  // things/{thing}.
  string name = 1 [
    (google.api.field_behavior) = REQUIRED,
    (google.api.resource_reference) = {type: "good.hearth.home/Thing"}
  ];
}

// Request of ListThings.
message ListThingsRequest {
  // 0 to 100.
  int32 page_size = 1;
  // From the last page.
  string page_token = 2;
}

// Response of ListThings.
message ListThingsResponse {
  // The things.
  repeated Thing things = 1;
  // The next page.
  string next_page_token = 2;
}

// Request of DeleteThing.
message DeleteThingRequest {
  // things/{thing}.
  string name = 1 [
    (google.api.field_behavior) = REQUIRED,
    (google.api.resource_reference) = {type: "good.hearth.home/Thing"}
  ];
}
"""


def _findings(tmp_path: Path, files: dict[str, str]) -> list[object]:
    protos = tmp_path / "protos"
    for name, text in files.items():
        path = protos / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    fds = lint.compile_protos(tmp_path / "image.binpb", protos)
    return list(lint.Linter(fds).run())


def test_the_contracts_pass_every_rule(tmp_path: Path) -> None:
    fds = lint.compile_protos(tmp_path / "image.binpb")
    files = [f.name for f in fds.file if f.package.startswith("hearth.")]
    assert {"hearth/wake/v1/wake.proto", "hearth/gateway/v1/gateway.proto"} <= set(files)
    assert [str(f) for f in lint.Linter(fds).run()] == []


def test_a_good_contract_has_no_finding(tmp_path: Path) -> None:
    assert _findings(tmp_path, {"hearth/good/v1/good.proto": GOOD}) == []


def test_each_rule_fails_on_a_bad_contract(tmp_path: Path) -> None:
    findings = _findings(
        tmp_path, {"hearth/bad/v1/bad.proto": BAD, "hearth/elsewhere/v1/odd.proto": ODD}
    )
    got = {(f.rule, f.message) for f in findings}  # type: ignore[attr-defined]
    printed = "\n".join(str(f) for f in findings)

    def has(rule: str, text: str) -> bool:
        return any(r == rule and text in m for r, m in got)

    expected = [
        ("naming", "package hearth.odd must be hearth.<name>.v<N>"),
        ("naming", "field hearth.bad.v1.Thing.Bad_Field is not lower_snake_case"),
        ("naming", "enum state is not PascalCase"),
        ("naming", "enum value state_on is not UPPER_SNAKE_CASE"),
        ("enum-value-prefix", "enum value ZERO must start with STATE_"),
        ("enum-value-prefix", "enum value STATE must start with STATE_"),
        ("enum-zero", "enum state: the zero value must be STATE_UNSPECIFIED"),
        ("comments", "rpc ListThings has no comment"),
        ("comments", "message hearth.bad.v1.GetThingRequest has no comment"),
        ("comments", "request field hearth.bad.v1.GetThingRequest.name has no comment"),
        ("request-response", "rpc ListThings takes ListThingsReq, not ListThingsRequest"),
        ("request-response", "rpc ListThings returns ThingPage, not ListThingsResponse"),
        ("request-response", "rpc DeleteThing must return google.protobuf.Empty"),
        ("pagination", "ListThingsReq needs int32 page_size and string page_token"),
        ("pagination", "ThingPage needs a repeated field and string next_page_token"),
        ("resource", "resource type 'things.example.com/Widget' must be"),
        ("resource", "hearth.bad.v1.Thing: resource without a pattern"),
        ("resource", "hearth.bad.v1.Other has an IDENTIFIER name but no (google.api.resource)"),
        ("resource", "rpc GetOther returns hearth.bad.v1.Other, which is not a resource"),
        ("resource-reference", "request field hearth.bad.v1.GetThingRequest.name has no"),
        ("resource-reference", "refers to 'bad.hearth.home/Nothing', which no message declares"),
        ("field-behavior", "GetThingRequest.name must be REQUIRED"),
        ("field-behavior", "ListThingsReq.parent must be REQUIRED"),
        ("field-behavior", "CreateThingRequest.thing must be REQUIRED"),
    ]
    missing = [e for e in expected if not has(*e)]
    assert not missing, f"not found: {missing}\nfindings:\n{printed}"
    # Every rule the linter knows fails here at least once, and nothing fires on Color.
    rules = {rule for rule, _ in got}
    assert rules == {
        "naming", "enum-value-prefix", "enum-zero", "comments", "request-response",
        "pagination", "resource", "resource-reference", "field-behavior",
    }  # fmt: skip
    assert not any("Color" in m for _, m in got), printed
    # Findings point at the line of what breaks the rule.
    bad_line = next(f for f in findings if "Bad_Field" in f.message)  # type: ignore[attr-defined]
    assert BAD.splitlines()[bad_line.line - 1].strip() == "string Bad_Field = 2;"  # type: ignore[attr-defined]


def test_buf_config_keeps_the_standard_and_comment_rules() -> None:
    text = (ROOT / "protos" / "buf.yaml").read_text()
    assert "- STANDARD" in text and "- COMMENTS" in text
