"""Sample-rate conversion through soxr, one-shot or streaming chunk by chunk."""

from __future__ import annotations

import numpy as np

from soprano_cli.errors import InvalidParameterError

# The rates the CLI and server document; any rate in [MIN_RATE, MAX_RATE] works.
COMMON_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
MIN_RATE = 8000
MAX_RATE = 192000


def check_rate(rate: int, *, param: str = "sample_rate") -> int:
    """Return `rate` as an int, or raise InvalidParameterError if it is outside what we support."""
    if int(rate) != rate or not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidParameterError(
            f"sample rate {rate} is not supported; use {MIN_RATE}..{MAX_RATE} Hz "
            f"(e.g. {', '.join(map(str, COMMON_RATES))})",
            param=param,
        )
    return int(rate)


def resample(audio: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole mono float32 signal; len(out) == round(len(audio) * out_rate / in_rate)."""
    audio = np.asarray(audio, dtype=np.float32)
    if in_rate == out_rate:
        return audio
    import soxr

    return soxr.resample(audio, in_rate, out_rate, quality="HQ").astype(np.float32, copy=False)


class StreamResampler:
    """Resample float32 audio, shape (n,) or (n, channels), arriving in chunks of any size.

    soxr keeps the filter state between chunks, so the concatenated output equals a one-shot
    resample up to rounding: after `flush()` the total length is round(n_in * out_rate / in_rate)
    (±1 sample). Each `process()` returns what soxr can emit so far; the filter delay (a few ms)
    is returned by `flush()`.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int = 1):
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self._stream = None
        if in_rate != out_rate:
            import soxr

            self._stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32", quality="HQ")

    @property
    def active(self) -> bool:
        """False when the rates match and chunks pass through untouched."""
        return self._stream is not None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Feed one chunk; return the resampled samples ready so far."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if self._stream is None:
            return chunk
        return self._stream.resample_chunk(chunk, last=False)

    def flush(self) -> np.ndarray:
        """Return the samples still held in the filter; call once, at the end."""
        empty = np.zeros((0,) if self.channels == 1 else (0, self.channels), dtype=np.float32)
        if self._stream is None:
            return empty
        return self._stream.resample_chunk(empty, last=True)
