"""The wake service put together: store, engine, sniffers, events for logs and watchers."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import OrderedDict
from dataclasses import replace

import grpc

from hearth.wake.v1 import wake_pb2
from hearth_runtime import (
    AlreadyExists,
    HearthError,
    InvalidArgument,
    ResourceExhausted,
    Runtime,
    Unavailable,
)
from hearth_runtime.broadcast import Broadcaster
from hearth_runtime.errors import not_found
from hearth_runtime.logs import kv
from hearth_runtime.store import state_file
from hearth_runtime.timeconv import timestamp_from_epoch
from hearth_wake import metrics
from hearth_wake.config import WakeConfig
from hearth_wake.engine import (
    Engine,
    EngineSettings,
    Event,
    State,
    WakeRecord,
    interfaces_of,
)
from hearth_wake.hosts import MAX_HOSTS, HostSpec
from hearth_wake.loading import Quarantined, load_declared, reason_of
from hearth_wake.repo import Repository
from hearth_wake.sender import Sender
from hearth_wake.sniffer import Sniffer, bpf_expression, check_host_filter, decode_for
from hearth_wake.views import EVENT_KINDS, VERDICTS, host_proto, wake_proto

log = logging.getLogger("hearth.wake")

TICK_SECONDS = 0.1
MONITOR_SECONDS = 2.0


class WakeApp:
    """One per process: hosts (stored and declared), the engine, one sniffer per interface."""

    def __init__(self, config: WakeConfig, runtime: Runtime[WakeConfig] | None = None) -> None:
        self.config = config
        self.repo = Repository(state_file(config.state_dir, "wake", formerly=["wake.sqlite"]))
        self.sender = Sender()
        self.events: Broadcaster[wake_pb2.HostEvent] = Broadcaster()
        self.sniffers: dict[str, Sniffer] = {}
        self.broken: set[str] = set()
        self.quarantine: dict[str, Quarantined] = {}
        """Hosts that could not be loaded (stored or declared), by id: shown, not watched."""
        # Per wake id, the persisted part last written: a wake is written when it starts
        # and when its outcome or follow-up changes, never per demand frame or retry
        # (its counters live in memory meanwhile; ListWakes reads the running wake live).
        self._persisted: OrderedDict[int, tuple[object, ...]] = OrderedDict()
        self.runtime = runtime
        self.loop: asyncio.AbstractEventLoop | None = None
        settings = EngineSettings(
            probe_interval=config.probe_interval,
            unknown_timeout=config.unknown_timeout,
            wake_grace=config.wake_grace,
            followup_window=config.followup_window,
            icmp=config.icmp_probes,
        )
        self.engine = Engine(
            self.sender, settings, self._notify, first_wake_id=self.repo.last_wake_id() + 1
        )

    # -------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        assert self.runtime is not None, "started by the runtime"
        runtime = self.runtime
        # The sniffer thread must get the GIL quickly when a demand arrives (reaction target:
        # p99 < 3 ms); the default 5 ms switch interval alone could exceed that.
        sys.setswitchinterval(0.0005)
        self.loop = asyncio.get_running_loop()
        interrupted = self.repo.interrupt_unfinished()
        if interrupted:
            log.info(
                "wakes interrupted by a restart; states are re-derived by probing",
                extra=kv(count=interrupted),
            )
        for item in self._load_hosts():
            self._install(item)
        metrics.QUARANTINED.set(len(self.quarantine))
        await self.refresh_sniffers()
        runtime.spawn(self._ticker, "wake-ticker")
        runtime.spawn(self._monitor, "wake-sniffer-monitor")

    async def close(self) -> None:
        for sniffer in self.sniffers.values():
            sniffer.stop()
        self.sniffers.clear()
        self.sender.close()
        self.events.close()
        self.repo.close()

    def _load_hosts(self) -> list[HostSpec | Quarantined]:
        """Stored hosts merged with declared ones; bad ones come back Quarantined.

        Declared hosts win over stored settings of the same name (and are stored); others
        are kept. A bad declared entry is quarantined and not stored: the stored row of that
        name, if any, is left as it is."""
        loaded: dict[str, HostSpec | Quarantined] = {item.id: item for item in self.repo.hosts()}
        declared: dict[str, HostSpec | Quarantined] = {}
        now = time.time()
        for i, raw in enumerate(self.config.hosts):
            item = load_declared(raw, i, now)
            if item.id in declared:
                item = Quarantined(
                    id=item.id,
                    reason=f"hosts[{i}].name: {item.id!r} is declared more than once",
                    origin="config",
                    view=wake_pb2.Host(),
                )
            declared[item.id] = item
        for host_id, item in declared.items():
            base = loaded.get(host_id)
            if isinstance(item, HostSpec):
                unchanged = isinstance(base, HostSpec) and base.same_settings(item)
                if unchanged and base is not None and base.origin == "config":
                    continue
                if base is not None:
                    item = replace(item, create_time=base.create_time or item.create_time)
                self.repo.save_host(item)
            loaded[host_id] = item
        return [loaded[k] for k in sorted(loaded)]

    def _install(self, item: HostSpec | Quarantined) -> None:
        """Watch a loaded host, or quarantine it; nothing about one host stops the others."""
        if isinstance(item, HostSpec):
            try:
                if len(self.engine.specs()) >= MAX_HOSTS:
                    raise ValueError(f"more than {MAX_HOSTS} hosts: not watched")
                self._check_unique_loaded(item)
                check_host_filter(item)
                self.engine.set_host(item)
            except Exception as exc:
                item = Quarantined(
                    id=item.id,
                    reason=reason_of(exc),
                    origin=item.origin,
                    view=item.to_proto(),
                    password=item.password,
                    create_time=item.create_time,
                )
            else:
                log.info(
                    f"Watching {item.id}",
                    extra=kv(
                        mac=item.mac,
                        ipv4=item.ipv4,
                        ipv6=item.ipv6 or "-",
                        interface=item.effective_interface or "?",
                        origin=item.origin,
                    ),
                )
                return
        self.quarantine[item.id] = item
        log.error(
            "host quarantined: not watched until fixed (UpdateHost) or deleted (DeleteHost)",
            extra=kv(host=item.id, origin=item.origin, reason=item.reason),
        )

    def _check_unique_loaded(self, spec: HostSpec) -> None:
        for other in self.engine.specs():
            for attr in ("mac", "ipv4", "ipv6"):
                value = getattr(spec, attr)
                if value and value == getattr(other, attr):
                    raise InvalidArgument(
                        f"host.{attr}", f"{value} already belongs to {other.name}"
                    )

    def release(self, host_id: str) -> None:
        """A quarantined host was fixed or deleted through the API."""
        if self.quarantine.pop(host_id, None) is not None:
            log.info("host no longer quarantined", extra=kv(host=host_id))
        metrics.QUARANTINED.set(len(self.quarantine))

    async def _ticker(self) -> None:
        while True:
            try:
                self.engine.tick()
            except Exception:  # retries and liveness must go on whatever one host does
                log.exception("tick failed")
            await asyncio.sleep(TICK_SECONDS)

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_SECONDS)
            await self.refresh_sniffers()

    # --------------------------------------------------------------- sniffers
    async def refresh_sniffers(self) -> None:
        """One sniffer per interface in use, with the filter for its hosts; broken ones are
        restarted. Health is NOT_SERVING while any interface in use cannot be watched."""
        wanted = interfaces_of(self.engine.specs())
        for ifname in [name for name in self.sniffers if name not in wanted]:
            self.sniffers.pop(ifname).stop()
        broken = set()
        for ifname, specs in wanted.items():
            sniffer = self.sniffers.get(ifname)
            try:
                if sniffer is None or not sniffer.alive:
                    if sniffer is not None:
                        sniffer.stop()
                        self.sender.forget(ifname)
                    sniffer = self._open_sniffer(ifname)
                sniffer.set_filter(bpf_expression(specs))
            except Exception as exc:  # e.g. a filter that does not compile: this interface only
                self.sniffers.pop(ifname, None)
                broken.add(ifname)
                if ifname not in self.broken:
                    log.error(
                        "cannot watch interface", extra=kv(interface=ifname or "?", error=exc)
                    )
        if self.broken and not broken:
            log.info("watching every interface again", extra=kv(interfaces=",".join(wanted)))
        self.broken = broken
        if self.runtime is not None:
            await self.runtime.set_serving(not broken)

    def _open_sniffer(self, ifname: str) -> Sniffer:
        if not ifname:
            raise ValueError("no interface routes to the host")
        own_mac = self.sender.interface(ifname).mac
        frames_seen = metrics.FRAMES.labels(ifname)
        malformed = metrics.MALFORMED.labels(ifname)
        handler = decode_for(ifname, self.engine.on_frame, own_mac, malformed.inc, frames_seen.inc)
        assert self.runtime is not None, "sniffers are opened once started"
        sniffer = Sniffer(
            ifname,
            handler,
            self._sniffer_failed,
            self.runtime.supervisor,
            self.config.capture_realtime,
        )
        sniffer.start()
        self.sniffers[ifname] = sniffer
        return sniffer

    def _sniffer_failed(self, ifname: str, exc: Exception) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._schedule_refresh)

    def _schedule_refresh(self) -> None:
        if self.runtime is not None:
            self.runtime.spawn(self.refresh_sniffers, "wake-sniffer-refresh", restart=False)

    # ----------------------------------------------------------------- events
    def _notify(self, event: Event) -> None:
        """Called by the engine from any thread, outside its lock."""
        loop = self.loop
        if loop is None:
            self._handle(event)
        else:
            loop.call_soon_threadsafe(self._handle, event)

    def _handle(self, event: Event) -> None:
        level = logging.INFO
        if event.kind == "demand" and event.verdict != "wake":
            level = logging.DEBUG
        log.log(level, event.message, extra=kv(host=event.host))
        if event.wake is not None:
            self._persist(event.wake)
        kind = EVENT_KINDS.get(event.kind)
        if kind is None:
            return
        msg = wake_pb2.HostEvent(
            kind=kind,
            host=host_proto(event.status.spec, event.status),
            message=event.message,
            verdict=VERDICTS.get(event.verdict, wake_pb2.DEMAND_VERDICT_UNSPECIFIED),
        )
        msg.time.CopyFrom(timestamp_from_epoch(event.time))
        if event.wake is not None:
            msg.wake.CopyFrom(wake_proto(event.wake))
        self.events.publish(msg)

    def _persist(self, wake: WakeRecord) -> None:
        """Write a wake when what is kept of it changed (start, outcome, follow-up, alive
        time); a demand or retry during a wake only changes counters, kept in memory."""
        key = (wake.outcome, wake.followed_up, wake.alive_time, wake.first_packet_time)
        if self._persisted.get(wake.id) == key:
            return
        self.repo.save_wake(wake)
        self._persisted[wake.id] = key
        self._persisted.move_to_end(wake.id)
        while len(self._persisted) > 1024:
            self._persisted.popitem(last=False)

    def wakes(self, host_id: str | None) -> list[WakeRecord]:
        """The wake history, newest first, with running wakes as the engine has them now."""
        live = {
            s.wake.id: s.wake
            for s in self.engine.statuses()
            if s.wake is not None and (host_id is None or s.spec.id == host_id)
        }
        return [live.get(w.id, w) for w in self.repo.wakes(host_id)]

    def publish(
        self, kind: wake_pb2.HostEvent.Kind.ValueType, host: wake_pb2.Host, text: str
    ) -> None:
        msg = wake_pb2.HostEvent(kind=kind, host=host, message=text)
        msg.time.GetCurrentTime()
        self.events.publish(msg)

    # ------------------------------------------------------------------ hosts
    def host_view(self, spec: HostSpec) -> wake_pb2.Host:
        return host_proto(spec, self.engine.status(spec.id))

    def _check_watchable(self, spec: HostSpec) -> None:
        try:
            check_host_filter(spec)
        except ValueError as exc:
            raise InvalidArgument("host", str(exc)) from None

    def _check_unique(self, spec: HostSpec, prefix: str) -> None:
        for other in self.engine.specs():
            if other.id == spec.id:
                continue
            for attr in ("mac", "ipv4", "ipv6"):
                value = getattr(spec, attr)
                if value and value == getattr(other, attr):
                    raise AlreadyExists(
                        f"{prefix}.{attr}: {value} already belongs to {other.name}",
                        field=f"{prefix}.{attr}",
                        metadata={"resource": other.name},
                    )

    async def _apply(self, spec: HostSpec) -> None:
        self.engine.set_host(spec)
        await self.refresh_sniffers()

    async def create_host(self, spec: HostSpec) -> wake_pb2.Host:
        """Store and watch a new host (its id known to be free)."""
        self._check_unique(spec, "host")
        self._check_watchable(spec)
        if len(self.engine.specs()) + len(self.quarantine) >= MAX_HOSTS:
            raise ResourceExhausted(f"at most {MAX_HOSTS} hosts; delete one first")
        if not self.repo.insert_host(spec):
            raise AlreadyExists(f"host {spec.name!r} already exists", field="host_id")
        await self._apply(spec)
        msg = self.host_view(spec)
        self.publish(wake_pb2.HostEvent.KIND_UPDATED, msg, f"{spec.id} created")
        return msg

    async def update_host(self, old: HostSpec | Quarantined, spec: HostSpec) -> wake_pb2.Host:
        """Replace ``old`` (watched or quarantined) by ``spec``."""
        self._check_unique(spec, "host")
        self._check_watchable(spec)
        self.repo.save_host(spec)
        if isinstance(old, Quarantined):
            self.release(old.id)
        await self._apply(spec)
        msg = self.host_view(spec)
        self.publish(wake_pb2.HostEvent.KIND_UPDATED, msg, f"{spec.id} updated")
        return msg

    async def delete_host(self, found: HostSpec | Quarantined) -> None:
        msg = found.to_proto() if isinstance(found, Quarantined) else self.host_view(found)
        self.repo.delete_host(found.id)
        if isinstance(found, Quarantined):
            self.release(found.id)
        else:
            self.engine.remove_host(found.id)
            await self.refresh_sniffers()
        self.publish(wake_pb2.HostEvent.KIND_DELETED, msg, f"{found.id} deleted")

    async def wait_until_awake(self, spec: HostSpec, within: float, send: bool) -> wake_pb2.Host:
        """The host once it is awake (sending a wake first if ``send``); UNAVAILABLE if its
        wake fails, DEADLINE_EXCEEDED after ``within`` seconds."""
        async with self.events.subscribe() as sub:
            status = self.engine.status(spec.id)
            if status is not None and status.state is State.AWAKE:
                return self.host_view(spec)
            if send and (status is None or status.state is not State.WAKING):
                self.engine.wake(spec.id)
            try:
                async with asyncio.timeout(within):
                    async for event in sub:
                        if event.host.name != spec.name:
                            continue
                        if event.kind == wake_pb2.HostEvent.KIND_ALIVE:
                            return self.host_view(spec)
                        if event.kind == wake_pb2.HostEvent.KIND_WAKE_FAILED:
                            raise Unavailable(f"{spec.id} did not wake: {event.message}")
                        if event.kind == wake_pb2.HostEvent.KIND_DELETED:
                            raise not_found("host", spec.name)
            except TimeoutError:
                pass
        status = self.engine.status(spec.id)
        state = status.state.name if status else "DELETED"
        raise DeadlineExceeded(f"{spec.id} not awake after {within:g} s (state {state})")

    def current_events(self, only: str = "") -> list[wake_pb2.HostEvent]:
        """One CURRENT event per host (quarantined ones first), or for host ``only``."""
        out = []
        for bad in self.quarantine.values():
            if only and bad.name != only:
                continue
            event = wake_pb2.HostEvent(
                kind=wake_pb2.HostEvent.KIND_CURRENT,
                host=bad.to_proto(),
                message=f"{bad.id} is quarantined: {bad.reason}",
            )
            event.time.GetCurrentTime()
            out.append(event)
        for status in self.engine.statuses():
            if only and status.spec.name != only:
                continue
            current = wake_pb2.HostEvent(
                kind=wake_pb2.HostEvent.KIND_CURRENT,
                host=host_proto(status.spec, status),
                message=f"{status.spec.id} is {status.state.name.lower()}",
            )
            current.time.GetCurrentTime()
            if status.wake is not None:
                current.wake.CopyFrom(wake_proto(status.wake))
            out.append(current)
        return out


class DeadlineExceeded(HearthError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "NOT_AWAKE_IN_TIME"
