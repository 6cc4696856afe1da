"""Comparing what the null sink heard with what was sent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 32000


@dataclass
class Match:
    lag: int  # where `sent` starts in the recording, in samples
    peak: float  # normalized cross-correlation at that lag (1.0 = identical shape)
    gain_db: float  # RMS of the heard segment relative to the sent signal
    heard_seconds: float  # extent of non-silence around the match


def find(recorded: np.ndarray, sent: np.ndarray, threshold: float = 0.01) -> Match:
    """Locate `sent` in `recorded` by FFT cross-correlation and measure the heard copy."""
    recorded = np.asarray(recorded, dtype=np.float64)
    sent = np.asarray(sent, dtype=np.float64)
    assert len(recorded) >= len(sent), f"recording too short: {len(recorded)} < {len(sent)} samples"
    n = 1 << int(np.ceil(np.log2(len(recorded) + len(sent))))
    corr = np.fft.irfft(np.fft.rfft(recorded, n) * np.conj(np.fft.rfft(sent, n)), n)[: len(recorded) - len(sent) + 1]
    lag = int(np.argmax(corr))
    segment = recorded[lag : lag + len(sent)]
    norm = np.linalg.norm(segment) * np.linalg.norm(sent)
    peak = float(corr[lag] / norm) if norm else 0.0
    rms = lambda x: np.sqrt(np.mean(x**2)) + 1e-12  # noqa: E731
    gain_db = float(20 * np.log10(rms(segment) / rms(sent)))
    loud = np.nonzero(np.abs(recorded) > threshold)[0]
    heard = (loud[-1] - loud[0] + 1) / RATE if len(loud) else 0.0
    return Match(lag, peak, gain_db, heard)


def chirp(seconds: float = 0.8, amplitude: float = 0.5, f0: float = 300.0, f1: float = 3000.0) -> np.ndarray:
    """A linear sweep with 10 ms fades: a sharp cross-correlation peak, easy to find in a recording."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    fade = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)
    return (amplitude * fade * np.sin(phase)).astype(np.float32)


def without_pauses(heard: np.ndarray, shortest: int = 160) -> np.ndarray:
    """The recording minus runs of exact silence (>= 5 ms): where a producer slower than real
    time made the player pause, which issue 5 allows; generated speech has no such runs."""
    silent = heard == 0
    keep = np.ones_like(silent)
    start = None
    for i, quiet in enumerate(np.append(silent, False)):
        if quiet and start is None:
            start = i
        elif not quiet and start is not None:
            if i - start >= shortest:
                keep[start:i] = False
            start = None
    return heard[keep]
