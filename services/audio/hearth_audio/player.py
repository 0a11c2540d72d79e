"""The station's player (MPD via python-mpd2's asyncio client).

Two connections: one for commands and status, one parked in ``idle`` so that every change
(play, pause, next song, volume, playlist) is reported at once. A lost MPD is retried with
backoff and reported as ``reachable = false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from mpd.asyncio import MPDClient
from mpd.base import CommandError

from hearth.audio.v1 import audio_pb2
from hearth_runtime import FailedPrecondition, InvalidArgument, Unavailable
from hearth_runtime.logs import kv
from hearth_runtime.timeconv import duration_from_seconds

log = logging.getLogger("hearth.audio.player")

Action = audio_pb2.ControlPlayerRequest.Action
_STATES = {
    "play": audio_pb2.PLAYER_STATE_PLAYING,
    "pause": audio_pb2.PLAYER_STATE_PAUSED,
    "stop": audio_pb2.PLAYER_STATE_STOPPED,
}
_IDLE = ("player", "mixer", "playlist", "options")


def _split(address: str) -> tuple[str, int | None]:
    if address.startswith("/"):
        return address, None
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def player_from(status: dict[str, Any], song: dict[str, Any]) -> audio_pb2.Player:
    """MPD's ``status`` and ``currentsong`` as a Player message."""
    out = audio_pb2.Player(reachable=True)
    out.state = _STATES.get(status.get("state", ""), audio_pb2.PLAYER_STATE_UNSPECIFIED)
    out.volume = int(status.get("volume", -1))
    out.playlist_length = int(status.get("playlistlength", 0))
    if "elapsed" in status:
        out.elapsed.CopyFrom(duration_from_seconds(float(status["elapsed"])))
    if song:
        cur = out.current_song
        cur.file = str(song.get("file", ""))
        cur.title = str(song.get("title", ""))
        cur.artist = str(song.get("artist", ""))
        cur.album = str(song.get("album", ""))
        cur.position = int(song.get("pos", 0))
        duration = status.get("duration") or song.get("duration")
        if duration:
            cur.duration.CopyFrom(duration_from_seconds(float(duration)))
    return out


class Player:
    """MPD control and change notification; ``on_change`` gets every new Player state."""

    def __init__(
        self,
        address: str,
        on_change: Callable[[audio_pb2.Player], None],
        retry_max: float = 30.0,
    ) -> None:
        self.address = address
        self.current = audio_pb2.Player(reachable=False)
        self.error = "not connected yet"
        self._on_change = on_change
        self._retry_max = retry_max
        self._cmd: MPDClient | None = None
        self._lock = asyncio.Lock()

    @property
    def reachable(self) -> bool:
        return self.current.reachable

    async def run(self) -> None:
        """Connect, follow ``idle`` forever; reconnect with backoff when MPD goes away."""
        backoff = 0.5
        while True:
            idler = MPDClient()
            try:
                host, port = _split(self.address)
                await asyncio.wait_for(idler.connect(host, port), 5)
                cmd = MPDClient()
                await asyncio.wait_for(cmd.connect(host, port), 5)
                self._cmd = cmd
                backoff = 0.5
                log.info("MPD connected", extra=kv(address=self.address))
                await self.refresh()
                async for _changed in idler.idle(list(_IDLE)):
                    await self.refresh()
                raise ConnectionError("idle ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lost(f"MPD {self.address}: {exc or type(exc).__name__}")
            finally:
                self._disconnect(idler)
                if self._cmd is not None:
                    self._disconnect(self._cmd)
                    self._cmd = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._retry_max)

    @staticmethod
    def _disconnect(client: MPDClient) -> None:
        with contextlib.suppress(Exception):
            client.disconnect()

    def _lost(self, error: str) -> None:
        if error != self.error:
            log.warning("MPD unreachable", extra=kv(address=self.address, err=error))
        self.error = error
        if self.current.reachable or not self.current.ListFields():
            self.current = audio_pb2.Player(reachable=False)
            self._on_change(self.current)

    async def refresh(self) -> audio_pb2.Player:
        """Read status and current song; report a change to ``on_change``."""
        cmd = self._require()
        async with self._lock:
            status = await cmd.status()
            song = await cmd.currentsong()
        new = player_from(status, song)
        self.error = ""
        if new != self.current:
            self.current = new
            self._on_change(new)
        return new

    def _require(self) -> MPDClient:
        if self._cmd is None:
            raise Unavailable(f"the player (MPD at {self.address}) is not reachable: {self.error}")
        return self._cmd

    async def control(self, action: int, volume: int = 0) -> audio_pb2.Player:
        cmd = self._require()
        if action == Action.ACTION_SET_VOLUME and not 0 <= volume <= 100:
            raise InvalidArgument("volume", f"{volume} is out of range (0-100)")
        try:
            async with self._lock:
                if action == Action.ACTION_PLAY:
                    await cmd.play()
                elif action == Action.ACTION_PAUSE:
                    await cmd.pause(1)
                elif action == Action.ACTION_NEXT:
                    await cmd.next()
                elif action == Action.ACTION_PREVIOUS:
                    await cmd.previous()
                elif action == Action.ACTION_STOP:
                    await cmd.stop()
                elif action == Action.ACTION_SET_VOLUME:
                    await cmd.setvol(volume)
                else:
                    raise InvalidArgument("action", "must be PLAY, PAUSE, NEXT, ... (not unset)")
        except (InvalidArgument, Unavailable):
            raise
        except CommandError as exc:
            raise FailedPrecondition(f"MPD refused: {exc}") from None
        except Exception as exc:
            raise Unavailable(f"MPD {self.address}: {exc}") from None
        return await self.refresh()
