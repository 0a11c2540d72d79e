"""hearth-ci: watches Zuul and Gerrit for my changes."""

from __future__ import annotations

import logging

from hearth.ci.v1 import ci_pb2, ci_pb2_grpc
from hearth_ci.config import CiConfig
from hearth_ci.engine import Engine
from hearth_ci.service import CiServicer
from hearth_ci.watches import WatchStore, validate_watch
from hearth_runtime import Runtime, ServiceSpec, run_service
from hearth_runtime.logs import kv

log = logging.getLogger("hearth.ci")

SERVICE_NAME = ci_pb2.DESCRIPTOR.services_by_name["CiService"].full_name


async def setup(runtime: Runtime[CiConfig]) -> None:
    config = runtime.config

    def check(watch: ci_pb2.Watch) -> ci_pb2.Watch:
        return validate_watch(watch, config.min_refresh_seconds, config.default_refresh_seconds)

    store = WatchStore(config.state_dir / "ci.sqlite3", check)

    async def zuul_health(ok: bool) -> None:
        await runtime.set_serving(ok)

    engine = Engine(config, on_zuul_health=zuul_health, supervisor=runtime.supervisor)
    runtime.add_servicer(
        ci_pb2_grpc.add_CiServiceServicer_to_server,
        CiServicer(config, store, engine),
        SERVICE_NAME,
    )
    await engine.start()
    for watch in store.list():
        if watch.quarantine_reason:  # never fatal: shown by GetWatch/ListWatches, fixable
            log.warning(
                "watch quarantined", extra=kv(watch=watch.name, reason=watch.quarantine_reason)
            )
            continue
        engine.add_watch(watch)

    async def cleanup() -> None:
        await engine.stop()
        store.close()

    runtime.on_shutdown(cleanup)


SPEC = ServiceSpec(name="ci", config_cls=CiConfig, setup=setup)


def main() -> None:
    run_service(SPEC)


if __name__ == "__main__":
    main()
