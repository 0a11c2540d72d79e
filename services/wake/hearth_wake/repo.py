"""Hosts and wake history in SQLite (hearth_runtime.store): what survives a restart."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from hearth_runtime.logs import kv
from hearth_runtime.store import Store
from hearth_wake.engine import WakeRecord
from hearth_wake.hosts import HostSpec
from hearth_wake.loading import Quarantined, load_stored

log = logging.getLogger("hearth.wake.repo")

MIGRATIONS = [
    """
    CREATE TABLE hosts (
      id TEXT PRIMARY KEY,
      data TEXT NOT NULL,
      create_time REAL NOT NULL,
      update_time REAL NOT NULL
    );
    CREATE TABLE wakes (
      id INTEGER PRIMARY KEY,
      host TEXT NOT NULL,
      data TEXT NOT NULL
    );
    CREATE INDEX wakes_by_host ON wakes (host, id)
    """,
]
_RUNTIME_ONLY = ("next_retry", "deadline", "followup_deadline")
MAX_WAKES = 10_000  # the newest wakes kept (all hosts together)
PRUNE_EVERY = 100
_WAKE_FIELDS = {f.name for f in fields(WakeRecord)} - set(_RUNTIME_ONLY)


class Repository:
    def __init__(self, path: Path | str) -> None:
        self.store = Store(path, MIGRATIONS)
        self.max_wakes = MAX_WAKES

    def hosts(self) -> list[HostSpec | Quarantined]:
        """Every stored host, validated like a request; a row that fails is Quarantined."""
        rows = self.store.query("SELECT * FROM hosts ORDER BY id")
        return [load_stored(r["id"], r["data"], r["create_time"], r["update_time"]) for r in rows]

    def save_host(self, spec: HostSpec) -> None:
        self.store.execute(
            "INSERT INTO hosts (id, data, create_time, update_time) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET data = excluded.data, "
            "update_time = excluded.update_time",
            (spec.id, json.dumps(spec.to_json()), spec.create_time, spec.update_time),
        )

    def insert_host(self, spec: HostSpec) -> bool:
        """Insert a new host; False if the id is taken."""
        count = self.store.execute(
            "INSERT OR IGNORE INTO hosts (id, data, create_time, update_time) VALUES (?,?,?,?)",
            (spec.id, json.dumps(spec.to_json()), spec.create_time, spec.update_time),
        )
        return count == 1

    def delete_host(self, host_id: str) -> bool:
        with self.store.transaction() as db:
            db.execute("DELETE FROM wakes WHERE host = ?", (host_id,))
            return db.execute("DELETE FROM hosts WHERE id = ?", (host_id,)).rowcount == 1

    def save_wake(self, wake: WakeRecord) -> None:
        data = {k: v for k, v in asdict(wake).items() if k not in _RUNTIME_ONLY}
        self.store.execute(
            "INSERT INTO wakes (id, host, data) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            (wake.id, wake.host, json.dumps(data)),
        )
        if wake.id % PRUNE_EVERY == 0:
            # The history is bounded: ListWakes reads it whole, and demands never stop.
            self.store.execute("DELETE FROM wakes WHERE id <= ?", (wake.id - self.max_wakes,))

    def wakes(self, host_id: str | None) -> list[WakeRecord]:
        """Newest first; every host's when ``host_id`` is None."""
        if host_id is None:
            rows = self.store.query("SELECT data FROM wakes ORDER BY id DESC")
        else:
            rows = self.store.query(
                "SELECT data FROM wakes WHERE host = ? ORDER BY id DESC", (host_id,)
            )
        out = []
        for row in rows:
            wake = _wake(row["data"])
            if wake is not None:
                out.append(wake)
        return out

    def last_wake_id(self) -> int:
        row = self.store.query_one("SELECT MAX(id) AS top FROM wakes")
        return int(row["top"] or 0) if row else 0

    def interrupt_unfinished(self) -> int:
        """Wakes still in progress when the service stopped: mark them interrupted."""
        count = 0
        for wake in self.wakes(None):
            if wake.outcome == "in_progress":
                wake.outcome = "interrupted"
                self.save_wake(wake)
                count += 1
        return count

    def close(self) -> None:
        self.store.close()


def _wake(raw: Any) -> WakeRecord | None:
    """A stored wake, or None (logged) if the row cannot be read: a hand-edited or older
    row hides itself, it does not break ListWakes or the start."""
    try:
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in _WAKE_FIELDS}
        wake = WakeRecord(**known)
        _check_types(wake)
        return wake
    except Exception as exc:
        log.warning("unreadable wake record skipped", extra=kv(error=exc))
        return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_types(wake: WakeRecord) -> None:
    texts = (wake.host, wake.trigger, wake.requester_mac, wake.requester_ip, wake.outcome)
    numbers = (wake.demand_time, wake.first_packet_time)
    ok = (
        isinstance(wake.id, int)
        and all(isinstance(t, str) for t in texts)
        and all(_number(n) and 0 <= n < 1e11 for n in numbers)
        and (wake.alive_time is None or (_number(wake.alive_time) and 0 <= wake.alive_time < 1e11))
        and all(
            isinstance(n, int) and 0 <= n < 2**31 for n in (wake.packets_sent, wake.extra_demands)
        )
        and (wake.followed_up is None or isinstance(wake.followed_up, bool))
        and isinstance(wake.methods, list)
        and all(isinstance(m, str) for m in wake.methods)
    )
    if not ok:
        raise TypeError("a field has the wrong type or is out of range")
