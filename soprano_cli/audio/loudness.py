"""Gain and loudness: a volume multiplier, integrated loudness (ITU-R BS.1770 via pyloudnorm), clipping.

The gain that brings speech to a target loudness is measured once per stream, on its first
sentence (at most `MEASURE_SECONDS` of it), then held: sentences of one voice are about equally
loud, and one gain keeps their relative levels instead of pumping from sentence to sentence.
"""

from __future__ import annotations

import numpy as np

MIN_VOLUME = 0.0
MAX_VOLUME = 10.0
MIN_LUFS = -70.0
MAX_LUFS = -5.0
MEASURE_SECONDS = 3.0  # audio held (when streaming) until the gain is known
PEAK_CEILING = 10 ** (-1 / 20)  # loudness gain stops where the measured peak reaches -1 dBFS
_BLOCK_SECONDS = 0.4  # BS.1770's gating block: shorter audio is repeated to fill one


def check_volume(volume: float) -> float:
    """`volume` as a float, or ValueError naming the allowed range."""
    volume = float(volume)
    if not MIN_VOLUME <= volume <= MAX_VOLUME:  # also rejects NaN
        raise ValueError(f"volume must be between {MIN_VOLUME:g} and {MAX_VOLUME:g}, got {volume:g}")
    return volume


def check_lufs(lufs: float) -> float:
    """`lufs` as a float, or ValueError naming the allowed range."""
    lufs = float(lufs)
    if not MIN_LUFS <= lufs <= MAX_LUFS:
        raise ValueError(f"loudness must be between {MIN_LUFS:g} and {MAX_LUFS:g} LUFS, got {lufs:g}")
    return lufs


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness in LUFS (-inf for silence)."""
    import pyloudnorm

    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    block = int(_BLOCK_SECONDS * sample_rate)
    if audio.size == 0 or not np.any(audio):
        return float("-inf")
    if audio.size <= block:
        audio = np.tile(audio, block // audio.size + 1)  # same level, long enough for one gating block
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio))


def loudness_gain(audio: np.ndarray, sample_rate: int, target_lufs: float) -> float:
    """The gain that brings `audio` to `target_lufs`, limited so its peak stays under -1 dBFS (1 for silence)."""
    measured = integrated_loudness(audio, sample_rate)
    if not np.isfinite(measured):
        return 1.0
    gain = 10 ** ((target_lufs - measured) / 20)
    peak = float(np.max(np.abs(audio)))
    return min(gain, PEAK_CEILING / peak) if peak > 0 else gain


def apply_gain(audio: np.ndarray, gain: float) -> np.ndarray:
    """`audio * gain`, clipped to full scale (what an s16 encoder could not hold anyway)."""
    if gain == 1.0:
        return audio
    return np.clip(np.asarray(audio, dtype=np.float32) * np.float32(gain), -1.0, 1.0)
