"""Watches (named filters) persisted in SQLite, and their validation."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import duration_pb2, json_format

from hearth.ci.v1 import ci_pb2
from hearth_ci import filters
from hearth_runtime import AlreadyExists, InvalidArgument
from hearth_runtime.errors import not_found
from hearth_runtime.store import Store

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


def validate_watch(
    watch: ci_pb2.Watch, min_refresh: float, default_refresh: float, field: str = "watch"
) -> ci_pb2.Watch:
    """Checked copy with the default refresh interval filled in."""
    filters.validate(watch.filter, f"{field}.filter")
    out = ci_pb2.Watch()
    out.CopyFrom(watch)
    if not out.HasField("refresh_interval") or out.refresh_interval.ToNanoseconds() == 0:
        out.refresh_interval.CopyFrom(_seconds(default_refresh))
    seconds = out.refresh_interval.ToNanoseconds() / 1e9
    if seconds < min_refresh:
        raise InvalidArgument(
            f"{field}.refresh_interval", f"{seconds:g} s is below the minimum of {min_refresh:g} s"
        )
    return out


def _seconds(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(value * 1e9))
    return out


class WatchStore:
    def __init__(self, path: Path | str) -> None:
        self.store = Store(path, MIGRATIONS)

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

    def get(self, watch_id: str) -> ci_pb2.Watch:
        row = self.store.query_one("SELECT body FROM watches WHERE id = ?", (watch_id,))
        if row is None:
            raise not_found("watch", f"watches/{watch_id}")
        return json_format.Parse(row["body"], ci_pb2.Watch())

    def list(self) -> list[ci_pb2.Watch]:
        rows = self.store.query("SELECT body FROM watches ORDER BY id")
        return [json_format.Parse(r["body"], ci_pb2.Watch()) for r in rows]

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
