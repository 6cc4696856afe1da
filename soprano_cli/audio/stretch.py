"""Pitch-preserving time-stretch (WSOLA) that streams: `TimeStretcher` for chunks, `stretch` for a whole signal.

WSOLA (waveform-similarity overlap-add, Verhelst & Roelands 1993) cuts the input into windowed
frames read every `speed * HOP` samples and lays them down every `HOP` samples; each frame's
read position may move by up to `TOLERANCE` samples to the place whose waveform best continues
the frame laid down before it, so periods line up and pitch is kept.

Why our own: the maintained packages either need a binary (pyrubberband), stretch only whole
signals (pytsmod, librosa, pedalboard's time_stretch) or are unmaintained (audiotsm, whose
stream API is the model for this one). benchmarks/bench_shaping.py compares quality and cost.

Streaming contract: every decision depends only on input samples at absolute positions, never on
how the input was cut into chunks, so any chunking followed by `flush()` gives, sample for sample,
what `stretch()` gives for the whole signal; there are no chunk boundaries to hear.
"""

from __future__ import annotations

import numpy as np

MIN_SPEED = 0.25
MAX_SPEED = 4.0

FRAME = 1024  # samples per frame: 32 ms at 32 kHz, a few pitch periods of speech
HOP = FRAME // 2  # output hop: Hann windows at half overlap sum to one
TOLERANCE = 256  # how far (samples) a frame's read position may move to match the waveform
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / FRAME)).astype(np.float32)  # periodic Hann


def check_speed(speed: float) -> float:
    """`speed` as a float, or ValueError naming the allowed range."""
    speed = float(speed)
    if not MIN_SPEED <= speed <= MAX_SPEED:  # also rejects NaN
        raise ValueError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, got {speed:g}")
    return speed


class TimeStretcher:
    """Stateful WSOLA: feed chunks with `process`, end with `flush`; output has `round(len / speed)` samples.

    Output is delayed by about one frame plus the tolerance (40 ms): a frame is laid down once
    the input it may read from has arrived.
    """

    def __init__(self, speed: float):
        self.speed = check_speed(speed)
        self._analysis_hop = HOP * self.speed
        self._input = np.zeros(0, np.float32)  # samples from absolute position `_input_start` on
        self._input_start = 0
        self._received = 0
        self._frame = 0  # the next frame to lay down
        self._previous = None  # read position of the frame laid down last
        self._overlap = np.zeros(FRAME, np.float32)  # output from `_frame * HOP` on, still summing
        self._emitted = 0
        self._ready = np.zeros(0, np.float32)  # laid down, not yet returned

    def process(self, audio: np.ndarray) -> np.ndarray:
        """Stretched audio that is final once `audio` has been added (may be empty)."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self._input = np.concatenate([self._input, audio])
        self._received += audio.size
        self._lay_down(end=None)
        return self._take(int(round(self._received / self.speed)))

    def flush(self) -> np.ndarray:
        """The rest of the output, the input's end padded with silence; the stretcher is spent after."""
        total = int(round(self._received / self.speed))
        # Enough silence for every frame that starts before the output's end to read all it may.
        needed = self._received + 2 * FRAME + 2 * TOLERANCE + HOP - (self._input_start + self._input.size)
        self._input = np.concatenate([self._input, np.zeros(max(needed, 0), np.float32)])
        self._lay_down(end=total)
        return self._take(total)

    def _lay_down(self, end: int | None) -> None:
        """Lay down every frame whose input has arrived (with `end`: up to the output's end)."""
        out = [self._ready]
        while end is None or self._frame * HOP < end:
            nominal = int(round(self._frame * self._analysis_hop))
            low = max(nominal - TOLERANCE, 0)
            high = nominal + TOLERANCE + FRAME  # the input the search may read
            if self._previous is not None:
                high = max(high, self._previous + HOP + FRAME)
            if high > self._input_start + self._input.size:
                break  # wait for more input
            position = nominal if self._previous is None else self._best(low, nominal + TOLERANCE)
            self._overlap += self._slice(position, FRAME) * _WINDOW
            out.append(self._overlap[:HOP].copy())  # no later frame reaches these samples
            self._overlap = np.concatenate([self._overlap[HOP:], np.zeros(HOP, np.float32)])
            self._previous = position
            self._frame += 1
            self._drop_before(min(low, position))
        self._ready = np.concatenate(out)

    def _take(self, limit: int) -> np.ndarray:
        """Return laid-down output up to `limit` samples in all: never past the output's final length."""
        count = max(min(limit - self._emitted, self._ready.size), 0)
        audio, self._ready = self._ready[:count], self._ready[count:]
        self._emitted += count
        return audio

    def _best(self, low: int, high: int) -> int:
        """The read position in [low, high] whose frame best continues the previous frame's waveform."""
        template = self._slice(self._previous + HOP, FRAME)
        region = self._slice(low, high - low + FRAME)
        scores = np.correlate(region, template, mode="valid")  # (high - low + 1,)
        return low + int(np.argmax(scores))

    def _slice(self, start: int, length: int) -> np.ndarray:
        offset = start - self._input_start
        return self._input[offset:offset + length]

    def _drop_before(self, position: int) -> None:
        """Forget input no later frame can read: every later read starts at or after `position`."""
        cut = position - self._input_start
        if cut > 4 * FRAME:
            self._input = self._input[cut:]
            self._input_start = position


def stretch(audio: np.ndarray, speed: float) -> np.ndarray:
    """`audio` played `speed` times as fast at the same pitch (speed 1: returned unchanged)."""
    if check_speed(speed) == 1.0:
        return np.asarray(audio, dtype=np.float32)
    stretcher = TimeStretcher(speed)
    return np.concatenate([stretcher.process(audio), stretcher.flush()])
