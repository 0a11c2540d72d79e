"""Measure the output offset between two zones: play noise bursts, record, correlate.

Both zones' sink monitors are recorded at once with libpulse's simple API (via ctypes),
which also reports each recording's latency: every chunk read is stamped with the time its
last sample was captured (read time minus latency), so the two recordings are placed on
one clock even though they started at slightly different moments. The test signal is
played into the stream's sink on the station; the offset is the lag of the GCC-PHAT
cross-correlation peak (interpolated to a fraction of a sample) plus the recordings'
start difference.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hearth_runtime.errors import Unavailable
from hearth_runtime.supervisor import Supervisor

RATE = 48000
CHUNK_FRAMES = 480  # 10 ms
BAND_HZ = (100.0, 2000.0)  # the test signal's band
PA_SAMPLE_S16LE = 3
PA_STREAM_PLAYBACK = 1
PA_STREAM_RECORD = 2

Samples = npt.NDArray[np.float64]


class _SampleSpec(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("rate", ctypes.c_uint32), ("channels", ctypes.c_uint8)]


class _BufferAttr(ctypes.Structure):
    _fields_ = [
        ("maxlength", ctypes.c_uint32),
        ("tlength", ctypes.c_uint32),
        ("prebuf", ctypes.c_uint32),
        ("minreq", ctypes.c_uint32),
        ("fragsize", ctypes.c_uint32),
    ]


_LIB: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        name = ctypes.util.find_library("pulse-simple") or "libpulse-simple.so.0"
        lib = ctypes.CDLL(name)
        lib.pa_simple_new.restype = ctypes.c_void_p
        lib.pa_simple_new.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.POINTER(_SampleSpec),
            ctypes.c_void_p,
            ctypes.POINTER(_BufferAttr),
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.pa_simple_read.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.pa_simple_write.argtypes = lib.pa_simple_read.argtypes
        lib.pa_simple_drain.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        lib.pa_simple_get_latency.restype = ctypes.c_uint64
        lib.pa_simple_get_latency.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        lib.pa_simple_free.argtypes = [ctypes.c_void_p]
        strerror = ctypes.CDLL(ctypes.util.find_library("pulse") or "libpulse.so.0").pa_strerror
        strerror.restype = ctypes.c_char_p
        strerror.argtypes = [ctypes.c_int]
        lib.pa_strerror = strerror  # type: ignore[attr-defined]
        _LIB = lib
    return _LIB


class PulseStreamError(Exception):
    pass


class SimpleStream:
    """A mono s16le 48 kHz playback or record stream on one PulseAudio server."""

    def __init__(self, server: str, device: str, record: bool, name: str) -> None:
        lib = _lib()
        self._lib = lib
        spec = _SampleSpec(PA_SAMPLE_S16LE, RATE, 1)
        small = CHUNK_FRAMES * 2
        attr = _BufferAttr(
            0xFFFFFFFF,  # maxlength: server default
            small * 4 if not record else 0xFFFFFFFF,
            0xFFFFFFFF,
            0xFFFFFFFF,
            small if record else 0xFFFFFFFF,
        )
        err = ctypes.c_int(0)
        self._s = lib.pa_simple_new(
            server.encode(),
            b"hearth-audio-sync",
            PA_STREAM_RECORD if record else PA_STREAM_PLAYBACK,
            device.encode() if device else None,
            name.encode(),
            ctypes.byref(spec),
            None,
            ctypes.byref(attr),
            ctypes.byref(err),
        )
        if not self._s:
            raise PulseStreamError(f"{server} {device or 'default'}: {self._strerror(err)}")

    def _strerror(self, err: ctypes.c_int) -> str:
        msg = self._lib.pa_strerror(err.value)
        return msg.decode() if msg else f"error {err.value}"

    def read(self, nbytes: int) -> bytes:
        buf = ctypes.create_string_buffer(nbytes)
        err = ctypes.c_int(0)
        if self._lib.pa_simple_read(self._s, buf, nbytes, ctypes.byref(err)) < 0:
            raise PulseStreamError(self._strerror(err))
        return buf.raw

    def write(self, data: bytes) -> None:
        err = ctypes.c_int(0)
        if self._lib.pa_simple_write(self._s, data, len(data), ctypes.byref(err)) < 0:
            raise PulseStreamError(self._strerror(err))

    def drain(self) -> None:
        err = ctypes.c_int(0)
        if self._lib.pa_simple_drain(self._s, ctypes.byref(err)) < 0:
            raise PulseStreamError(self._strerror(err))

    def latency(self) -> float:
        err = ctypes.c_int(0)
        usec = self._lib.pa_simple_get_latency(self._s, ctypes.byref(err))
        return float(usec) / 1e6

    def close(self) -> None:
        if self._s:
            self._lib.pa_simple_free(self._s)
            self._s = None


@dataclass
class Recording:
    """Samples plus the estimated capture time (time.monotonic) of the first one."""

    samples: Samples
    start: float


_RECORDERS = itertools.count(1)  # recorder threads' names are unique


@dataclass
class Recorder:
    """Records a device in a thread until stopped; stamps every chunk's capture time.

    The thread is a short job under the supervisor (``restart=False``: a recording that
    failed is reported by :meth:`stop`, not retried), named uniquely and removed from the
    supervisor when stopped."""

    server: str
    device: str
    supervisor: Supervisor = field(default_factory=Supervisor)
    chunks: list[bytes] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    error: Exception | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _done: threading.Event = field(default_factory=threading.Event)
    _name: str = ""

    def start(self, timeout: float = 5.0) -> None:
        self._name = f"sync-rec-{next(_RECORDERS)}"
        self._stop = self.supervisor.spawn_thread(
            self._run, self._name, family="audio-sync-recorder", restart=False
        )
        if not self._ready.wait(timeout):
            raise PulseStreamError(f"{self.server}: recording did not start")
        if self.error:
            raise self.error

    def _run(self, stop: threading.Event) -> None:
        try:
            self._record(stop)
        finally:
            self._done.set()

    def _record(self, stop: threading.Event) -> None:
        try:
            stream = SimpleStream(self.server, self.device, record=True, name="sync recording")
        except Exception as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        frames = 0
        try:
            while not stop.is_set():
                data = stream.read(CHUNK_FRAMES * 2)
                captured = time.monotonic() - stream.latency()
                frames += CHUNK_FRAMES
                self.chunks.append(data)
                # Capture time of this recording's first sample, estimated from this chunk.
                self.starts.append(captured - frames / RATE)
        except Exception as exc:
            self.error = exc
        finally:
            stream.close()

    def abort(self) -> None:
        """Stop without waiting for or checking the recording."""
        self._stop.set()
        if self._name:
            self.supervisor.cancel(self._name)

    def stop(self) -> Recording:
        self._stop.set()
        if self._name:
            self._done.wait(5)
            self.supervisor.cancel(self._name)
        if self.error:
            raise PulseStreamError(f"{self.server} {self.device}: {self.error}")
        raw = b"".join(self.chunks)
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
        # The lower envelope is the least delayed estimate: scheduling only adds delay.
        starts = np.array(self.starts[5:] or self.starts)
        start = float(np.percentile(starts, 10)) if starts.size else 0.0
        return Recording(samples, start)


def burst_signal(
    seed: int = 7, bursts: int = 5, burst_s: float = 0.1, gap_s: float = 0.2
) -> Samples:
    """Noise bursts band-limited to about 2 kHz, peak about 0.6.

    Noise, not a tone: a tone's correlation is ambiguous by one period. Band-limited, so
    that the correlation peak is ~0.3 ms wide and survives the slight resampling a
    receiver applies while it adapts its rate.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(bursts):
        n = int(burst_s * RATE)
        spectrum = np.fft.rfft(rng.standard_normal(n))
        spectrum[int(BAND_HZ[1] * n / RATE) :] = 0
        spectrum[: int(BAND_HZ[0] * n / RATE)] = 0
        burst = np.fft.irfft(spectrum, n)
        burst *= 0.6 / np.max(np.abs(burst))
        parts += [burst * np.hanning(n), np.zeros(int(gap_s * RATE))]
    return np.concatenate([np.zeros(int(0.05 * RATE)), *parts])


def to_s16(samples: Samples) -> bytes:
    return bytes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def play(server: str, sink: str, samples: Samples) -> None:
    stream = SimpleStream(server, sink, record=False, name="sync test signal")
    try:
        stream.write(to_s16(samples))
        stream.drain()
    finally:
        stream.close()


def _phat_lag(a: Samples, b: Samples) -> int:
    """Whole-sample lag of ``b`` behind ``a`` by GCC-PHAT over the test signal's band.

    Whitening gives a tone (music playing meanwhile) no more weight than any other
    frequency; bins outside the band carry no test signal, only noise, and are dropped.
    """
    n = a.size + b.size
    size = 1 << (n - 1).bit_length()
    cross = np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size))
    freqs = np.fft.rfftfreq(size, 1 / RATE)
    band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
    weighted = np.where(band, cross / np.maximum(np.abs(cross), 1e-12), 0)
    corr = np.fft.irfft(weighted, size)
    k = int(np.argmax(corr))
    return k if k < size // 2 else k - size


def _fine_lag(a: Samples, b: Samples, around: int, span: int) -> tuple[float, float] | None:
    """Lag near ``around`` (+-``span`` samples) of b behind a, to a fraction of a sample,
    and the normalised correlation there; None if the window falls off ``b``."""
    start = around - span
    if start < 0 or start + a.size + 2 * span > b.size or a.size == 0:
        return None
    window = b[start : start + a.size + 2 * span]
    corr = np.correlate(window, a, mode="valid")
    k = int(np.argmax(corr))
    frac = 0.0
    if 0 < k < corr.size - 1:
        y0, y1, y2 = corr[k - 1], corr[k], corr[k + 1]
        denom = y0 - 2 * y1 + y2
        frac = 0.5 * (y0 - y2) / denom if denom else 0.0
    seg = window[k : k + a.size]
    energy = float(np.sqrt(np.dot(a, a) * np.dot(seg, seg)))
    conf = float(corr[k] / energy) if energy > 0 else 0.0
    return start + k + frac, conf


def _bursts(x: Samples) -> list[tuple[int, int]]:
    """(start, end) of the bursts of a clean test signal (its 5 ms envelope above 1e-3)."""
    win = RATE // 200
    loud = np.convolve(np.abs(x), np.ones(win) / win, mode="same") > 1e-3
    edges = np.flatnonzero(np.diff(loud.astype(np.int8))) + 1
    bounds = [0, *edges.tolist(), x.size]
    return [(s, e) for s, e in itertools.pairwise(bounds) if loud[s] and e - s > win]


@dataclass
class SyncResult:
    offset_s: float
    confidence: float
    parts: int


def offset_between(
    rec_a: Recording, rec_b: Recording, signal: Samples, max_offset_s: float = 1.0
) -> SyncResult:
    """How much later ``rec_b``'s zone plays what ``rec_a``'s zone plays.

    The test signal is found in A by GCC-PHAT (robust against music playing meanwhile),
    then each of its bursts in A is matched against B near the coarse lag, to a fraction
    of a sample; the median is reported. Per burst, because a receiver adapting its rate
    stretches the signal slightly over seconds, which blurs one long correlation.
    """
    a, b = rec_a.samples, rec_b.samples
    start_diff = rec_b.start - rec_a.start
    in_a = _phat_lag(signal, a)
    coarse = _phat_lag(a, b)
    margin, span = RATE // 100, RATE // 500
    lags, confs = [], []
    for s, e in _bursts(signal):
        s0, e0 = in_a + s - margin, in_a + e + margin
        if s0 < 0 or e0 > a.size:
            continue
        found = _fine_lag(a[s0:e0], b, s0 + coarse, span)
        if found is not None:
            lags.append(found[0] - s0)
            confs.append(found[1])
    if not lags:
        return SyncResult(start_diff + coarse / RATE, 0.0, 0)
    offset = start_diff + float(np.median(lags)) / RATE
    confidence = max(0.0, min(1.0, float(np.median(confs))))
    if abs(offset) > max_offset_s:
        confidence = 0.0
    return SyncResult(offset, confidence, len(lags))


SESSION_SETTLE_S = 3.0
"""How long a fresh receiver needs, after its buffer filled, to hold still."""


def measure_offset(
    supervisor: Supervisor,
    devices: list[tuple[str, str]],
    station: str,
    sink: str,
    signal: Samples,
    seconds: float,
) -> SyncResult:
    """Record both zones' monitors while the station plays ``signal`` into ``sink``; the
    offset between them (blocking: run it in a thread)."""
    recorders = [Recorder(server, device, supervisor) for server, device in devices]
    try:
        for rec in recorders:
            rec.start()
        time.sleep(0.3)
        play(station, sink, signal)
        time.sleep(max(0.5, seconds - 0.3 - signal.size / RATE))
        recordings = [rec.stop() for rec in recorders]
    except PulseStreamError as exc:
        for rec in recorders:
            rec.abort()
        raise Unavailable(f"sync measurement failed: {exc}") from None
    return offset_between(recordings[0], recordings[1], signal)
