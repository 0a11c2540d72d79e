"""Every service keeps its state in <state_dir>/<service>.sqlite3; older names are renamed."""

from __future__ import annotations

from pathlib import Path

from hearth_runtime.store import Store, state_file

MIGRATIONS = ["CREATE TABLE things (id TEXT PRIMARY KEY)"]


def test_the_state_file_is_named_after_the_service(tmp_path: Path) -> None:
    assert state_file(tmp_path, "ci") == tmp_path / "ci.sqlite3"
    assert not (tmp_path / "ci.sqlite3").exists()  # naming creates nothing


def test_a_former_name_is_renamed_with_its_wal_and_keeps_its_rows(tmp_path: Path) -> None:
    old = Store(tmp_path / "wake.sqlite", MIGRATIONS)
    old.execute("INSERT INTO things VALUES ('kept')")
    # Still open: the row may live only in the WAL, which must move along with the file.
    (tmp_path / "copy").mkdir()
    for name in ("wake.sqlite", "wake.sqlite-wal", "wake.sqlite-shm"):
        if (tmp_path / name).exists():
            (tmp_path / "copy" / name).write_bytes((tmp_path / name).read_bytes())
    old.close()
    state = tmp_path / "copy"
    path = state_file(state, "wake", formerly=["wake.sqlite"])
    assert path == state / "wake.sqlite3"
    assert (state / "wake.sqlite-wal").exists() is False
    assert (state / "wake.sqlite3-wal").exists(), "the WAL (holding the row) moved along"
    assert not any(p.name.startswith("wake.sqlite-") or p.name == "wake.sqlite"
                   for p in state.iterdir())  # fmt: skip
    store = Store(path, MIGRATIONS)
    try:
        assert [r["id"] for r in store.query("SELECT id FROM things")] == ["kept"]
    finally:
        store.close()


def test_the_new_name_wins_over_a_former_one(tmp_path: Path) -> None:
    new = Store(tmp_path / "wake.sqlite3", MIGRATIONS)
    new.execute("INSERT INTO things VALUES ('new')")
    new.close()
    (tmp_path / "wake.sqlite").write_bytes(b"older")
    assert state_file(tmp_path, "wake", formerly=["wake.sqlite"]) == tmp_path / "wake.sqlite3"
    assert (tmp_path / "wake.sqlite").read_bytes() == b"older"  # left alone
