"""A small SQLite state store (WAL, numbered schema migrations) for persistent resources.

Services keep their desired state here so it survives restarts. Migrations are a list of SQL
scripts; ``PRAGMA user_version`` records how many have run.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Store:
    """A thread-safe wrapper around one SQLite connection."""

    def __init__(self, path: str | Path, migrations: Sequence[str]) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed change survives power loss (NORMAL in WAL mode may lose the last
        # transactions). Writes here are configuration and wake records: rare and small.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate(migrations)

    def _migrate(self, migrations: Sequence[str]) -> None:
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > len(migrations):
                raise RuntimeError(
                    f"{self.path}: schema version {version} is newer than this program "
                    f"({len(migrations)}); refusing to touch it"
                )
            for number, script in enumerate(migrations[version:], start=version + 1):
                with self.transaction() as db:
                    for statement in _statements(script):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All statements inside commit together or not at all."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run one statement in its own transaction; return the affected row count."""
        with self.transaction() as db:
            return db.execute(sql, params).rowcount

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def query_one(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
            return row

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


def state_file(state_dir: str | Path, service: str, *, formerly: Sequence[str] = ()) -> Path:
    """Where ``service`` keeps its state: ``<state_dir>/<service>.sqlite3`` for every service.

    A file stored under an older name (``formerly``, e.g. ``wake.sqlite``) is renamed to it,
    with its WAL and shared-memory files, so that a user's stored state still loads; a file
    already under the new name wins (the old one is then left alone)."""
    path = Path(state_dir) / f"{service}.sqlite3"
    if path.exists():
        return path
    for name in formerly:
        old = Path(state_dir) / name
        if old.exists():
            for suffix in ("-wal", "-shm"):  # before the main file: never a main file alone
                companion = old.with_name(old.name + suffix)
                if companion.exists():
                    companion.rename(path.with_name(path.name + suffix))
            old.rename(path)
            break
    return path
