"""The wake app in-process (its real store and engine, a sender that records instead of
sending, a fake clock): what each captured frame costs. Issue 11: during a wake every
repeated demand rewrote the wake record (an fsync'd SQLite write per ARP frame)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_wake_engine import (  # type: ignore[import-not-found]
    CLIENT_MAC,
    HOST_IP,
    HOST_MAC,
    OWN_MAC,
    Clock,
    RecordingSender,
    who_has,
)

from hearth_wake import frames
from hearth_wake.app import WakeApp
from hearth_wake.config import WakeConfig
from hearth_wake.engine import Engine, EngineSettings, State, WakeRecord
from hearth_wake.hosts import HostSpec
from hearth_wake.repo import Repository


class AppRig:
    def __init__(self, state_dir: Path) -> None:
        self.app = WakeApp(WakeConfig(state_dir=state_dir))
        self.clock = Clock()
        self.sender = RecordingSender()
        self.sender.clock = self.clock
        settings = EngineSettings(probe_interval=10, unknown_timeout=2, wake_grace=5)
        # The app's own event handling (its _notify, its store); only sending is recorded.
        self.app.engine = Engine(self.sender, settings, self.app._notify, clock=self.clock)
        spec = HostSpec(
            id="devbox",
            mac=HOST_MAC,
            ipv4=HOST_IP,
            interface="eth9",
            alive_timeout=30,
            wake_timeout=20,
            retry_interval=1,
            cooldown=30,
        )
        self.app.engine.set_host(spec)
        self.app.repo.save_host(spec)

    def writes(self) -> int:
        return int(self.app.repo.store._db.total_changes)

    def frame(self, pkt: object, times: int = 1) -> None:
        decoded = frames.decode(bytes(pkt))  # type: ignore[call-overload]
        assert decoded is not None
        for _ in range(times):
            self.app.engine.on_frame(decoded, self.clock.now, OWN_MAC)

    def advance(self, seconds: float) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now += 0.1
            self.app.engine.tick()

    def state(self) -> State:
        status = self.app.engine.status("devbox")
        assert status is not None
        return status.state


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[AppRig]:
    out = AppRig(tmp_path)
    try:
        yield out
    finally:
        out.app.repo.close()


def test_repeated_demands_cost_no_database_write(rig: AppRig) -> None:
    rig.advance(2.5)
    assert rig.state() is State.ASLEEP
    before = rig.writes()
    rig.frame(who_has())
    assert rig.state() is State.WAKING
    assert rig.writes() == before + 1  # the wake is recorded when it starts
    rig.frame(who_has(), times=200)
    rig.advance(3.0)  # three retries
    assert rig.writes() == before + 1, "demands and retries during a wake are not written"
    # The running wake's counters are read live.
    live = rig.app.wakes("devbox")[0]
    assert live.extra_demands == 200 and live.packets_sent >= 4
    rig.frame(who_has(src_mac=HOST_MAC, psrc=HOST_IP, pdst="198.18.0.1"))
    assert rig.state() is State.AWAKE
    assert rig.writes() == before + 2  # outcome: woke, with the final counters
    stored = rig.app.repo.wakes("devbox")[0]
    assert stored.outcome == "woke" and stored.extra_demands == 200
    rig.frame(who_has(), times=200)  # awake: the first one decides the follow-up
    assert rig.writes() == before + 3
    assert rig.app.repo.wakes("devbox")[0].followed_up is True
    rig.frame(who_has(), times=200)
    rig.advance(2.0)
    assert rig.writes() == before + 3


def test_demands_during_the_cooldown_cost_no_database_write(rig: AppRig) -> None:
    rig.advance(2.5)
    rig.frame(who_has())
    rig.advance(21.0)
    assert rig.state() is State.WAKE_FAILED
    before = rig.writes()
    rig.frame(who_has(), times=300)
    rig.advance(1.0)
    assert rig.writes() == before
    assert rig.app.repo.wakes("devbox")[0].outcome == "failed"
    assert rig.app.repo.wakes("devbox")[0].requester_mac == CLIENT_MAC


def test_the_wake_history_is_bounded(tmp_path: Path) -> None:
    repo = WakeApp(WakeConfig(state_dir=tmp_path)).repo
    repo.max_wakes = 30
    try:
        for i in range(1, 251):
            repo.save_wake(WakeRecord(i, "devbox", "arp", outcome="woke"))
        ids = [w.id for w in repo.wakes(None)]
        assert ids[0] == 250 and len(ids) <= 30 + 100 - 1  # pruned every 100 wakes
        assert min(ids) > 250 - 30 - 100
    finally:
        repo.close()


def test_state_stored_under_the_former_file_name_still_loads(tmp_path: Path) -> None:
    """Every service keeps <state_dir>/<service>.sqlite3; wake's state was wake.sqlite: a
    user's stored hosts and wakes come along (renamed on start), nothing is lost."""
    old = Repository(tmp_path / "wake.sqlite")
    spec = HostSpec(id="devbox", mac=HOST_MAC, ipv4=HOST_IP, interface="eth9")
    old.save_host(spec)
    old.save_wake(WakeRecord(7, "devbox", "arp", outcome="woke"))
    old.close()
    app = WakeApp(WakeConfig(state_dir=tmp_path))
    try:
        hosts = app.repo.hosts()
        assert [h.id for h in hosts] == ["devbox"]
        assert isinstance(hosts[0], HostSpec) and hosts[0].mac == HOST_MAC
        assert [(w.id, w.outcome) for w in app.repo.wakes(None)] == [(7, "woke")]
        assert app.repo.last_wake_id() == 7  # new wakes continue the numbering
    finally:
        app.repo.close()
    assert (tmp_path / "wake.sqlite3").is_file()
    assert not (tmp_path / "wake.sqlite").exists()
