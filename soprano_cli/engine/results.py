"""What synthesis returns, torch-free so that a daemon's client can build them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


WHOLE_SENTENCE = 1 << 30  # a chunk size meaning "each sentence's audio in one chunk, once it ends"


@dataclass
class SentenceAudio:
    """One finished sentence."""

    index: int
    text: str
    audio: np.ndarray  # float32 mono at SAMPLE_RATE
    frames: int
    finish_reason: str  # "stop", "length" (hit the token cap) or "hallucination"
    hallucinated: bool = False


@dataclass
class AudioChunk:
    """A piece of one sentence's audio, in order; the last piece of a sentence has `final` set."""

    sentence: int
    text: str
    audio: np.ndarray
    final: bool = False
    frames: int = 0  # frames of this sentence generated so far
    finish_reason: str | None = None
    hallucinated: bool = False  # the sentence looks like a loop so far (a run of near-identical frames)
