"""The ci service put together: the watch store and the engine that polls Zuul and Gerrit."""

from __future__ import annotations

import logging

from google.protobuf import field_mask_pb2

from hearth.ci.v1 import ci_pb2
from hearth_ci.config import CiConfig
from hearth_ci.engine import Engine
from hearth_ci.watches import UPDATABLE, WatchStore, validate_watch
from hearth_runtime import Runtime
from hearth_runtime.errors import FailedPrecondition
from hearth_runtime.logs import kv
from hearth_runtime.resources import apply_update_mask
from hearth_runtime.store import state_file

log = logging.getLogger("hearth.ci")


class CiApp:
    """One per process: stored watches and the engine that keeps their dashboards."""

    def __init__(self, config: CiConfig, runtime: Runtime[CiConfig]) -> None:
        self.config = config
        self.runtime = runtime
        self.store = WatchStore(state_file(config.state_dir, "ci"), self.validate)
        self.engine = Engine(
            config, on_zuul_health=self._zuul_health, supervisor=runtime.supervisor
        )

    async def start(self) -> None:
        await self.engine.start()
        for watch in self.store.list():
            if watch.quarantine_reason:  # never fatal: shown by GetWatch/ListWatches, fixable
                log.warning(
                    "watch quarantined", extra=kv(watch=watch.name, reason=watch.quarantine_reason)
                )
                continue
            self.engine.add_watch(watch)

    async def close(self) -> None:
        await self.engine.stop()
        self.store.close()

    async def _zuul_health(self, ok: bool) -> None:
        await self.runtime.set_serving(ok)

    # ---------------------------------------------------------------- watches

    def validate(self, watch: ci_pb2.Watch, field: str = "watch") -> ci_pb2.Watch:
        return validate_watch(
            watch, self.config.min_refresh_seconds, self.config.default_refresh_seconds, field
        )

    def create_watch(self, watch_id: str, watch: ci_pb2.Watch) -> ci_pb2.Watch:
        created = self.store.create(watch_id, self.validate(watch))
        self.engine.add_watch(created)
        return created

    def get_watch(self, watch_id: str) -> ci_pb2.Watch:
        return self.store.get(watch_id)

    def list_watches(self) -> list[ci_pb2.Watch]:
        return self.store.list()

    def update_watch(
        self, watch_id: str, patch: ci_pb2.Watch, mask: field_mask_pb2.FieldMask
    ) -> ci_pb2.Watch:
        current = self.store.get(watch_id)
        patched = apply_update_mask(current, patch, mask, UPDATABLE, "watch")
        patched = self.validate(patched)  # a quarantined watch leaves quarantine here
        patched.name = f"watches/{watch_id}"
        self.store.replace(watch_id, patched)
        self.engine.add_watch(patched)
        return patched

    def delete_watch(self, watch_id: str) -> None:
        self.store.delete(watch_id)
        self.engine.remove_watch(f"watches/{watch_id}")

    def running_watch(self, watch_id: str) -> str:
        """The name of watch ``watch_id``, running in the engine (NOT_FOUND if it does not
        exist, FAILED_PRECONDITION if it is quarantined)."""
        name = f"watches/{watch_id}"
        stored = self.store.get(watch_id)
        if stored.quarantine_reason:
            raise FailedPrecondition(
                f"watch {name!r} is quarantined ({stored.quarantine_reason}); fix it with "
                "UpdateWatch or remove it with DeleteWatch"
            )
        if name not in self.engine.watches:
            self.engine.add_watch(stored)
        return name
