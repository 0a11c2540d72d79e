"""The ci terminal dashboard with Zuul and Gerrit read directly: `python -m hearth_ci.dash`.

The dashboard itself (options, screen, reading the ci service) is the client's,
:mod:`hearth_client.dash` (also `hearth ci dash`); this adds ``--zuul URL [--tenant T]
--gerrit URL``, which runs the ci service's own filters, sources and dashboard building here.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
import typer

from hearth.ci.v1 import ci_pb2
from hearth_ci import filters
from hearth_ci.dashboard import Match, build_dashboard, gerrit_matches
from hearth_ci.sources import GerritClient, SourceError, SourceHealth, ZuulClient, zuul_status_url
from hearth_client.dash import DashOptions, make_command


class DirectSource:
    """Zuul and Gerrit read directly (the original tool's way)."""

    def __init__(self, options: DashOptions, flt: ci_pb2.Filter) -> None:
        if not options.watch:
            filters.validate(flt, "filter")
        self.description = filters.describe(flt)
        self.options = options
        self.flt = flt
        self.session = aiohttp.ClientSession()
        self.zuul = ZuulClient(self.session, zuul_status_url(options.zuul, options.tenant))
        self.gerrit = (
            GerritClient(self.session, options.gerrit, options.user, options.password)
            if options.gerrit
            else None
        )
        self.matches: dict[int, Match] | None = None

    async def dashboard(self) -> ci_pb2.Dashboard:
        await self.zuul.fetch()
        healths: list[SourceHealth] = [self.zuul.health]
        if self.gerrit is not None:
            healths.append(self.gerrit.health)
            with contextlib.suppress(SourceError):  # in gerrit.health; the last matches stay
                self.matches = await gerrit_matches(self.gerrit, self.flt)
        return build_dashboard(
            self.zuul.status, self.matches, self.flt, health=healths, zuul_url=self.zuul.url
        )

    async def dumps(self) -> list[Any]:
        out: list[Any] = []
        if self.options.dump_zuul:
            await self.zuul.fetch()
            out.append(self.zuul.raw if self.zuul.raw is not None else self.zuul.health.error)
        if self.options.dump_gerrit and self.gerrit is not None:
            try:
                await gerrit_matches(self.gerrit, self.flt)
                out.append(self.gerrit.raw)
            except SourceError as exc:
                out.append(str(exc))
        return out

    async def close(self) -> None:
        await self.session.close()


app = typer.Typer(add_completion=False, help=__doc__)
app.command()(make_command(DirectSource))


if __name__ == "__main__":
    app()
