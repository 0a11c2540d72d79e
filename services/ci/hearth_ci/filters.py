"""A watch's filter: validation, and the Gerrit queries it becomes (one per filter group).

As in the original dashboard, each option is a *group* (owners ORed together, projects ORed
together, the topic, the raw query, starred, watched, the changes); groups are joined with
the operator (OR by default) and ``status:open`` is always added. No group at all means
``owner:<user>``. Each group is its own ``q=`` in ONE Gerrit request, so the answer also
says why each change matched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from hearth.ci.v1 import ci_pb2
from hearth_runtime import InvalidArgument
from hearth_runtime.text import neutral

_CHANGE_NUMBER = re.compile(r"^[1-9]\d{0,9}$")
_TERM = re.compile(r"^[^\s()\"]+$")


@dataclass(frozen=True, slots=True)
class Group:
    """One filter group: the Gerrit query and the reason shown for changes it matched."""

    reason: str
    query: str


def operator_name(op: int) -> str:
    return "AND" if op == ci_pb2.OPERATOR_AND else "OR"


WORD_LIMIT = 100
QUERY_LIMIT = 1000
LIST_LIMITS = {"owners": 20, "changes": 50, "projects": 50, "ignored_pipelines": 20}


def validate(flt: ci_pb2.Filter, field: str = "filter") -> None:
    """INVALID_ARGUMENT naming the field for anything outside the bounds in ci.proto."""
    if flt.operator not in (ci_pb2.OPERATOR_UNSPECIFIED, ci_pb2.OPERATOR_OR, ci_pb2.OPERATOR_AND):
        raise InvalidArgument(
            f"{field}.operator",
            f"unknown operator {flt.operator} (use OPERATOR_AND or OPERATOR_OR)",
        )
    for name, limit in LIST_LIMITS.items():
        count = len(getattr(flt, name))
        if count > limit:
            raise InvalidArgument(f"{field}.{name}", f"{count} entries; at most {limit}")
    for i, change in enumerate(flt.changes):
        if not _CHANGE_NUMBER.match(change):
            raise InvalidArgument(
                f"{field}.changes[{i}]", f"{neutral(change, 40)!r} is not a change number"
            )
    for name in ("owners", "projects", "ignored_pipelines"):
        for i, value in enumerate(getattr(flt, name)):
            _word(f"{field}.{name}[{i}]", value)
    for name in ("user", "topic"):
        value = getattr(flt, name)
        if value:
            _word(f"{field}.{name}", value)
    _query(f"{field}.query", flt.query)
    if (flt.watched or flt.starred) and not flt.user:
        raise InvalidArgument(
            f"{field}.user", "watched and starred need the Gerrit user whose stars/watches count"
        )
    if not groups_of(flt) and not flt.user:
        raise InvalidArgument(
            f"{field}.user",
            "the filter is empty: give a user (their own changes are shown) or at least one "
            "of owners, changes, topic, query, watched, starred, projects",
        )


def _word(field: str, value: str) -> None:
    if len(value) > WORD_LIMIT:
        raise InvalidArgument(field, f"{len(value)} characters; at most {WORD_LIMIT}")
    if not _TERM.match(value) or not value.isprintable():
        raise InvalidArgument(field, f"{neutral(value, 60)!r} must be one word without quotes")


def _query(field: str, query: str) -> None:
    """A raw query is joined with the other groups in parentheses: it must not be able to
    close them early, nor carry control characters into Gerrit's logs or ours."""
    if len(query) > QUERY_LIMIT:
        raise InvalidArgument(field, f"{len(query)} characters; at most {QUERY_LIMIT}")
    if not query.isprintable():
        raise InvalidArgument(field, "must not contain control characters")
    depth, quoted = 0, False
    for char in query:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth < 0:
                break
    if depth != 0 or quoted:
        raise InvalidArgument(field, "unbalanced parentheses or quotes")


def groups_of(flt: ci_pb2.Filter) -> list[Group]:
    """The filter groups in the original's order (without the default owner group)."""
    groups: list[Group] = []
    if flt.owners:
        groups.append(Group("owner", _any("owner", flt.owners)))
    if flt.changes:
        groups.append(Group("change", _any("change", flt.changes)))
    if flt.topic:
        groups.append(Group("topic", f"topic:{flt.topic}"))
    if flt.query:
        groups.append(Group("query", f"({flt.query})"))
    if flt.watched:
        groups.append(Group("watched", "is:watched"))
    if flt.starred:
        groups.append(Group("starred", "is:starred"))
    if flt.projects:
        groups.append(Group("project", _any("project", flt.projects)))
    return groups


def effective_groups(flt: ci_pb2.Filter) -> list[Group]:
    """The groups to query: the filter's, or ``owner:<user>`` when it has none."""
    return groups_of(flt) or [Group("owner", f"owner:{flt.user}")]


def gerrit_queries(flt: ci_pb2.Filter) -> list[str]:
    """One Gerrit query per group, each restricted to open changes."""
    return [f"status:open {g.query}" for g in effective_groups(flt)]


def describe(flt: ci_pb2.Filter) -> str:
    """E.g. ``owner:danms OR project:openstack/nova OR is:starred``."""
    sep = f" {operator_name(flt.operator)} "
    text = sep.join(g.query for g in effective_groups(flt))
    if flt.ignored_pipelines:
        text += " (ignoring " + ", ".join(flt.ignored_pipelines) + ")"
    return text


def _any(key: str, values: Iterable[str]) -> str:
    terms = [f"{key}:{v}" for v in values]
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"
