"""Watches (named filters) persisted in SQLite, and their validation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from hearth.ci.v1 import ci_pb2
from hearth_ci import filters
from hearth_runtime import AlreadyExists, InvalidArgument
from hearth_runtime.errors import not_found
from hearth_runtime.store import Store
from hearth_runtime.text import neutral
from hearth_runtime.timeconv import duration_from_seconds, duration_seconds

MIGRATIONS = [
    """
    CREATE TABLE watches (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        created REAL NOT NULL
    )
    """,
]
UPDATABLE = ("display_name", "filter", "refresh_interval")
# Enum names written before the values carried their enum's prefix (a body stored by an
# older version says "operator": "AND"; json_format would silently drop the unknown name).
LEGACY_OPERATORS = {"OR": "OPERATOR_OR", "AND": "OPERATOR_AND"}


MAX_REFRESH_SECONDS = 86_400
DISPLAY_NAME_LIMIT = 200


def validate_watch(
    watch: ci_pb2.Watch, min_refresh: float, default_refresh: float, field: str = "watch"
) -> ci_pb2.Watch:
    """Checked copy with the default refresh interval filled in (bounds: ci.proto)."""
    filters.validate(watch.filter, f"{field}.filter")
    if len(watch.display_name) > DISPLAY_NAME_LIMIT:
        raise InvalidArgument(
            f"{field}.display_name",
            f"{len(watch.display_name)} characters; at most {DISPLAY_NAME_LIMIT}",
        )
    if not watch.display_name.isprintable():
        raise InvalidArgument(f"{field}.display_name", "must not contain control characters")
    out = ci_pb2.Watch()
    out.CopyFrom(watch)
    out.ClearField("quarantine_reason")  # output only
    interval = f"{field}.refresh_interval"
    seconds = duration_seconds(interval, out.refresh_interval, 0, MAX_REFRESH_SECONDS)
    if seconds == 0:  # unset or zero: the default
        out.refresh_interval.CopyFrom(duration_from_seconds(default_refresh))
        seconds = default_refresh
    if seconds < min_refresh:
        raise InvalidArgument(interval, f"{seconds:g} s is below the minimum of {min_refresh:g} s")
    return out


def upgrade(body: str) -> str:
    """A stored body in today's JSON form: older enum names get their prefix. Anything that
    is not a JSON object comes back as it was (and is quarantined by the parse)."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return body
    flt = data.get("filter") if isinstance(data, dict) else None
    if isinstance(flt, dict) and flt.get("operator") in LEGACY_OPERATORS:
        flt["operator"] = LEGACY_OPERATORS[flt["operator"]]
        return json.dumps(data)
    return body


class WatchStore:
    """Watches in SQLite. A stored watch that no longer parses or validates (written by an
    older version, edited by hand, a bound tightened) is *quarantined*, never fatal: it is
    returned with ``quarantine_reason`` set, not polled, and can be updated or deleted."""

    def __init__(
        self, path: Path | str, check: Callable[[ci_pb2.Watch], ci_pb2.Watch] | None = None
    ) -> None:
        self.store = Store(path, MIGRATIONS)
        self.check = check

    def create(self, watch_id: str, watch: ci_pb2.Watch) -> ci_pb2.Watch:
        if self.store.query_one("SELECT 1 FROM watches WHERE id = ?", (watch_id,)):
            raise AlreadyExists(f"watch 'watches/{watch_id}' already exists")
        watch.name = f"watches/{watch_id}"
        watch.create_time.GetCurrentTime()
        self.store.execute(
            "INSERT INTO watches (id, body, created) VALUES (?, ?, ?)",
            (watch_id, json_format.MessageToJson(watch), watch.create_time.ToMilliseconds()),
        )
        return watch

    def _load(self, watch_id: str, body: object) -> ci_pb2.Watch:
        name = f"watches/{watch_id}"
        try:
            if not isinstance(body, str):
                raise ValueError(f"stored body is {type(body).__name__}, not JSON text")
            watch = json_format.Parse(upgrade(body), ci_pb2.Watch(), ignore_unknown_fields=True)
        except Exception as exc:  # any stored bytes at all: quarantined, never fatal
            reason = f"stored form does not parse: {neutral(exc, 200)}"
            return ci_pb2.Watch(name=name, quarantine_reason=reason)
        watch.name = name
        watch.ClearField("quarantine_reason")
        if self.check is not None:
            try:
                checked = self.check(watch)
            except InvalidArgument as exc:
                watch.quarantine_reason = f"no longer valid: {neutral(exc, 300)}"
                return watch
            checked.name, checked.create_time.seconds = name, watch.create_time.seconds
            checked.create_time.nanos = watch.create_time.nanos
            return checked
        return watch

    def get(self, watch_id: str) -> ci_pb2.Watch:
        row = self.store.query_one("SELECT body FROM watches WHERE id = ?", (watch_id,))
        if row is None:
            raise not_found("watch", f"watches/{watch_id}")
        return self._load(watch_id, row["body"])

    def list(self) -> list[ci_pb2.Watch]:
        rows = self.store.query("SELECT id, body FROM watches ORDER BY id")
        return [self._load(str(r["id"]), r["body"]) for r in rows]

    def replace(self, watch_id: str, watch: ci_pb2.Watch) -> None:
        count = self.store.execute(
            "UPDATE watches SET body = ? WHERE id = ?",
            (json_format.MessageToJson(watch), watch_id),
        )
        if count == 0:
            raise not_found("watch", f"watches/{watch_id}")

    def delete(self, watch_id: str) -> None:
        if self.store.execute("DELETE FROM watches WHERE id = ?", (watch_id,)) == 0:
            raise not_found("watch", f"watches/{watch_id}")

    def close(self) -> None:
        self.store.close()
