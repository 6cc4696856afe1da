"""Play audio through PortAudio (sounddevice) as it arrives: `Player` for pushed chunks, `play` for iterators.

A callback OutputStream pulls from a queue that the producer fills. When the producer is
slower than real time the callback plays silence and resumes with the next chunk; at the end
the stream drains every queued sample before `close()` returns. Every wait has a short
timeout so that Ctrl-C in the main thread stops playback at once.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from soprano_cli.audio.resample import StreamResampler
from soprano_cli.errors import AudioDeviceError

logger = logging.getLogger(__name__)

_WAIT_STEP = 0.05  # seconds per wait slice: the bound on how long Ctrl-C can go unnoticed
# Seconds of audio the device holds ahead of the speaker. PortAudio's "low" (a few ms through
# PulseAudio) lost audio whenever a busy machine delayed the callback; speech gains nothing from less.
DEVICE_LATENCY = 0.1
_DUE_SLACK = 0.02  # seconds a callback may run late before the device is counted as starved


def _sounddevice():
    """Import sounddevice lazily; its import fails with OSError when libportaudio is missing."""
    try:
        import sounddevice
    except OSError as error:
        raise AudioDeviceError(
            "cannot play audio: the PortAudio library is not installed (e.g. apt install libportaudio2)"
        ) from error
    except ImportError as error:
        raise AudioDeviceError("cannot play audio: the sounddevice package is not installed") from error
    _silence_alsa_messages()
    return sounddevice


_alsa_handler = None  # the installed no-op handler; ALSA keeps only a pointer, so it must live on


def _silence_alsa_messages() -> None:
    """Stop ALSA's library printing its own lines ("ALSA lib pcm.c:…: underrun occurred") onto
    stderr: they break `-q` and our one-line messages, and `Player` counts and reports underruns
    itself. Where there is no ALSA (macOS, Windows, a bare container) there is nothing to do."""
    global _alsa_handler
    if _alsa_handler is not None:
        return
    import ctypes
    import ctypes.util

    try:
        alsa = ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2")
        # void handler(const char *file, int line, const char *function, int err, const char *fmt, ...)
        handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                        ctypes.c_char_p)
        handler = handler_type(lambda *_: None)
        alsa.snd_lib_error_set_handler(handler)
    except (OSError, AttributeError):
        return
    _alsa_handler = handler


@dataclass(frozen=True)
class DeviceInfo:
    """One output device as PortAudio reports it."""

    index: int
    name: str
    host_api: str
    channels: int  # maximum output channels
    default_rate: float
    is_default: bool


def list_devices() -> list[DeviceInfo]:
    """The output devices PortAudio can see, default first marked."""
    sd = _sounddevice()
    default = sd.default.device[1]
    apis = sd.query_hostapis()
    return [
        DeviceInfo(
            index=index,
            name=info["name"],
            host_api=apis[info["hostapi"]]["name"],
            channels=info["max_output_channels"],
            default_rate=info["default_samplerate"],
            is_default=index == default,
        )
        for index, info in enumerate(sd.query_devices())
        if info["max_output_channels"] > 0
    ]


def resolve_device(device: str | int | None) -> int | None:
    """Device index for an index or a (case-insensitive) name substring; None means the default."""
    if device is None or device == "":
        sd = _sounddevice()
        if sd.default.device[1] < 0 and not list_devices():
            raise AudioDeviceError("no audio output device found (is a sound server running?)")
        return None
    devices = list_devices()
    if isinstance(device, int) or str(device).strip().isdigit():
        index = int(device)
        if any(d.index == index for d in devices):
            return index
        raise AudioDeviceError(f"no output device with index {index}; see `soprano play --list-devices`")
    wanted = str(device).lower()
    exact = [d for d in devices if d.name.lower() == wanted]
    partial = [d for d in devices if wanted in d.name.lower()]
    if exact or partial:
        return (exact or partial)[0].index
    raise AudioDeviceError(f"no output device matches '{device}'; see `soprano play --list-devices`")


class Player:
    """Push float32 chunks with write(); close() returns once all of them have been heard.

    The stream opens and starts at construction and plays silence until the first chunk, so
    that the device's start-up cost is paid while the producer is still working.
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int = 1,
        device: str | int | None = None,
        *,
        buffer_seconds: float = 2.0,
        latency: str | float = DEVICE_LATENCY,
    ):
        sd = self._sd = _sounddevice()
        index = resolve_device(device)
        self.sample_rate = sample_rate
        self.channels = channels
        self.underruns = 0  # times the queue ran dry mid-stream (producer slower than real time)
        self.dropouts = 0  # times the device ran dry (this process was not scheduled in time): a gap heard
        self.frames_played = 0  # frames handed to the device (at the device's rate)
        self.first_sample_time: float | None = None  # time.monotonic() of the first real sample
        self._cond = threading.Condition()
        self._queue: collections.deque[np.ndarray] = collections.deque()  # (frames, out_channels)
        self._offset = 0  # frames of _queue[0] already played
        self._queued = 0  # frames waiting in _queue
        self._eof = False
        self._tail = 0  # frames of silence still to play after the end, before stopping
        self._starved = True  # the last callback ran out of samples
        self._device_starved = False  # the last callback came after the device had run dry
        self._device_due = None  # time.monotonic() by which the device has played all it was given
        self._finished = threading.Event()
        self._stream, device_rate = self._open(sd, index, sample_rate, channels, latency)
        self._out_channels = self._stream.channels
        self._resampler = StreamResampler(sample_rate, device_rate, self._out_channels)
        self._capacity = int(buffer_seconds * device_rate)
        self.device_rate = device_rate
        try:
            self._stream.start()
        except sd.PortAudioError as error:
            self._stream.close()
            raise AudioDeviceError(f"cannot start audio output: {error}") from error

    def _open(self, sd, index, rate, channels, latency):
        """Open at the input's rate, or at the device's own rate (resampling) if it refuses."""
        try:
            info = sd.query_devices(index, "output")
        except (sd.PortAudioError, ValueError) as error:
            raise AudioDeviceError("no audio output device found (is a sound server running?)") from error
        out_channels = min(channels, int(info["max_output_channels"])) or 1
        rates = [rate]
        if int(info["default_samplerate"]) != rate:
            rates.append(int(info["default_samplerate"]))
        for attempt in rates:
            try:
                stream = sd.OutputStream(
                    samplerate=attempt,
                    channels=out_channels,
                    dtype="float32",
                    device=index,
                    latency=latency,
                    callback=self._callback,
                    finished_callback=self._finished.set,
                )
                return stream, attempt
            except sd.PortAudioError as error:
                last = error
                logger.debug("opening the output at %d Hz failed: %s", attempt, error)
        raise AudioDeviceError(f"cannot open audio output '{info['name']}': {last}")

    def _callback(self, outdata, frames, time_info, status) -> None:
        # PortAudio's thread: copy what is queued, fill the rest with silence, never block.
        # Not every backend flags an underflow (ALSA's pulse plugin often does not), so a callback
        # that comes after the device must have played everything it held counts too.
        now = time.monotonic()
        late = self._device_due is not None and now > self._device_due
        starved = bool(status.output_underflow) or late
        if starved and not self._device_starved:
            self.dropouts += 1
        self._device_starved = starved
        self._device_due = now + self._stream.latency + frames / self.device_rate + _DUE_SLACK
        filled = 0
        with self._cond:
            while filled < frames and self._queue:
                block = self._queue[0]
                n = min(frames - filled, len(block) - self._offset)
                outdata[filled : filled + n] = block[self._offset : self._offset + n]
                filled += n
                self._offset += n
                if self._offset == len(block):
                    self._queue.popleft()
                    self._offset = 0
            self._queued -= filled
            ended = self._eof and not self._queue
            self._cond.notify_all()
        if filled and self.first_sample_time is None:
            self.first_sample_time = time.monotonic()
        self.frames_played += filled
        if filled < frames:
            outdata[filled:] = 0
            if ended:
                # A little silence after the last sample, so backends that drop the final
                # period on stop (ALSA's pulse plugin) still play all of the real audio.
                self._tail -= frames - filled
                if self._tail <= 0:
                    raise self._sd.CallbackStop
            elif not self._starved:
                self.underruns += 1
            self._starved = True
        else:
            self._starved = False

    def write(self, chunk: np.ndarray) -> None:
        """Queue float32 samples, shape (n,) or (n, channels); blocks while the buffer is full."""
        block = np.asarray(chunk, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        if block.shape[1] != self._out_channels:
            block = self._match_channels(block)
        block = self._resampler.process(block)
        if len(block):
            self._enqueue(np.ascontiguousarray(block))

    def _match_channels(self, block: np.ndarray) -> np.ndarray:
        if block.shape[1] == 1:
            return np.repeat(block, self._out_channels, axis=1)
        return block.mean(axis=1, keepdims=True).repeat(self._out_channels, axis=1)  # downmix

    def _enqueue(self, block: np.ndarray) -> None:
        with self._cond:
            while self._queued >= self._capacity:
                self._check_alive()
                self._cond.wait(_WAIT_STEP)
            self._queue.append(block)
            self._queued += len(block)

    def _check_alive(self) -> None:
        if self._finished.is_set() or not self._stream.active:
            raise AudioDeviceError("the audio output stopped unexpectedly")

    def close(self) -> None:
        """Mark the end of the audio and wait until the device has played all of it."""
        if self._stream.closed:
            return
        flushed = self._resampler.flush()  # the resampler's filter delay, if it is active
        if len(flushed):
            self._enqueue(np.ascontiguousarray(flushed.reshape(-1, self._out_channels)))
        with self._cond:
            self._tail = int((self._stream.latency + 0.05) * self.device_rate)
            self._eof = True
            queued = self._queued
        deadline = time.monotonic() + queued / self.device_rate + self._stream.latency + 2.0
        while not self._finished.wait(_WAIT_STEP):
            if time.monotonic() > deadline:
                logger.warning("the audio device did not report the end of playback; stopping it")
                break
        self._stream.close(ignore_errors=True)
        if self.dropouts:
            logger.warning("playback dropped out %d time%s: this machine was too busy to feed the sound "
                           "device in time", self.dropouts, "" if self.dropouts == 1 else "s")

    def abort(self) -> None:
        """Stop at once, dropping whatever is still queued (Ctrl-C)."""
        if not self._stream.closed:
            self._stream.abort(ignore_errors=True)
            self._stream.close(ignore_errors=True)

    def __enter__(self) -> Player:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def play(
    blocks: Iterable[np.ndarray], sample_rate: int, channels: int = 1, device: str | int | None = None
) -> Player:
    """Play float32 blocks (frames, channels) as they come; returns the finished Player (its stats)."""
    with Player(sample_rate, channels, device) as player:
        for block in blocks:
            player.write(block)
    return player
