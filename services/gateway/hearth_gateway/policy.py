"""Each method's authorization policy, read from its descriptor: the one rule set.

Every rpc of a ``hearth.*.v1`` service carries ``option (hearth.auth.v1.policy) = {role:
ROLE_OPERATOR rate: "10/min"}`` (protos/hearth/auth/v1/policy.proto). The gateway reads it
here, like ``google.api.http``; its Python front door (``hearth_gateway.auth``) applies it,
and hearth-edge gets the same rules in its EdgeConfig (``hearth_gateway.edge``). A method
without the option, or with a role a method cannot have, is refused when the catalog is
built: the gateway does not start with an unprotected method.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import descriptor

from hearth.auth.v1 import policy_pb2

VIEWER = "viewer"
OPERATOR = "operator"
ANONYMOUS = "anonymous"

# Role names as the messages, logs and ErrorInfo metadata spell them, and their rank.
ROLE_NAMES = {
    policy_pb2.ROLE_ANONYMOUS: ANONYMOUS,
    policy_pb2.ROLE_VIEWER: VIEWER,
    policy_pb2.ROLE_OPERATOR: OPERATOR,
}
ROLE_VALUES = {name: value for value, name in ROLE_NAMES.items()}
RANK = {name: rank for rank, name in enumerate((ANONYMOUS, VIEWER, OPERATOR))}
# The roles a method may require.
METHOD_ROLES = (policy_pb2.ROLE_VIEWER, policy_pb2.ROLE_OPERATOR)

_RATE = re.compile(r"^(\d+)/(s|sec|second|min|minute|h|hour)$")
_PER = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}

Rate = tuple[int, float]  # (calls, per seconds)


def parse_rate(value: str) -> Rate:
    """``"10/min"`` -> (10 calls, per 60 seconds)."""
    match = _RATE.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not a rate like '10/min' or '2/s'")
    return int(match.group(1)), _PER[match.group(2)]


class PolicyError(ValueError):
    """A method without a (valid) ``hearth.auth.v1.policy`` option."""


@dataclass(frozen=True)
class Policy:
    role: str  # VIEWER or OPERATOR
    rate: Rate | None  # None: no limit


def method_policy(method: descriptor.MethodDescriptor) -> Policy:
    """The policy declared on ``method`` (PolicyError if there is none, or a wrong one)."""
    name = f"{method.containing_service.full_name}/{method.name}"
    options = method.GetOptions()
    if not options.HasExtension(policy_pb2.policy):
        raise PolicyError(
            f"{name} has no (hearth.auth.v1.policy) option: every rpc declares who may call it"
        )
    declared = options.Extensions[policy_pb2.policy]
    if declared.role not in METHOD_ROLES:
        raise PolicyError(
            f"{name}: policy role {policy_pb2.Role.Name(declared.role)} is not a method's "
            "role (ROLE_VIEWER or ROLE_OPERATOR)"
        )
    try:
        rate = parse_rate(declared.rate) if declared.rate else None
    except ValueError as exc:
        raise PolicyError(f"{name}: policy rate: {exc}") from None
    return Policy(ROLE_NAMES[declared.role], rate)


def rate_overrides(overrides: Mapping[str, str], known: set[str]) -> dict[str, Rate]:
    """The gateway's ``rate_limits`` setting, by full method name: each replaces the rate
    of that method's policy (ValueError for a method no contract has)."""
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"rate_limits: no such method: {', '.join(unknown)}")
    return {name: parse_rate(rate) for name, rate in overrides.items()}
