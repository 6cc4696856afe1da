"""Rendering engine output: chunks -> encoder, speakers and captions, with sentence silence and stats.

`soprano synth` drives this for one output; batch jobs use `write_audio_file` per file.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soprano_cli.errors import OutputError

SAMPLE_RATE = 32000


@dataclass
class RenderStats:
    """What a render produced, timed from its start."""

    sentences: int = 0
    samples: int = 0  # at the model's 32 kHz, silence included
    cues: list = field(default_factory=list)  # (start s, end s, text) per spoken sentence
    first_audio_seconds: float | None = None  # wall time until the first audio left
    elapsed: float = 0.0

    @property
    def audio_seconds(self) -> float:
        return self.samples / SAMPLE_RATE


class Renderer:
    """Writes chunks in order to an encoder and/or a player; inserts silence between sentences."""

    def __init__(self, encoder=None, player=None, sentence_silence: float = 0.0):
        self.encoder = encoder
        self.player = player
        self.silence = np.zeros(int(round(max(sentence_silence, 0.0) * SAMPLE_RATE)), dtype=np.float32)
        self.stats = RenderStats()
        self._started = time.perf_counter()
        self._cue_start: float | None = None

    def _emit(self, audio: np.ndarray) -> None:
        if not audio.size:
            return
        if self.stats.first_audio_seconds is None:
            self.stats.first_audio_seconds = time.perf_counter() - self._started
        if self.encoder is not None:
            self.encoder.write(audio)
        if self.player is not None:
            self.player.write(audio)
        self.stats.samples += audio.size

    def feed(self, chunks: Iterable) -> RenderStats:
        """Consume engine `AudioChunk`s to the end; returns the stats (also on self.stats)."""
        for chunk in chunks:
            if self._cue_start is None and chunk.audio.size:
                if self.stats.cues and self.silence.size:
                    self._emit(self.silence)  # between sentences only, never before the first
                self._cue_start = self.stats.samples / SAMPLE_RATE
            self._emit(chunk.audio)
            if chunk.final:
                self.stats.sentences += 1
                if self._cue_start is not None:
                    self.stats.cues.append((self._cue_start, self.stats.samples / SAMPLE_RATE, chunk.text))
                self._cue_start = None
        self.stats.elapsed = time.perf_counter() - self._started
        return self.stats


def join_sentences(pieces: list[np.ndarray], sentence_silence: float = 0.0) -> np.ndarray:
    """Concatenate sentence audio with silence between non-empty sentences."""
    silence = np.zeros(int(round(max(sentence_silence, 0.0) * SAMPLE_RATE)), dtype=np.float32)
    spoken = [p for p in pieces if p.size]
    parts: list[np.ndarray] = []
    for i, piece in enumerate(spoken):
        if i and silence.size:
            parts.append(silence)
        parts.append(piece)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


class OutputFile(io.FileIO):
    """An unbuffered output file whose write() writes all or raises.

    Unbuffered because the encoders flush every chunk anyway, and because a buffered file that
    failed to write (a full disk) still holds the bytes and raises again, with a traceback, on close.
    """

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += super().write(view[done:])
        return done


def open_output(path: str | Path):
    """Open an output file for writing, with a one-line error for unwritable paths."""
    try:
        return OutputFile(path, "wb")
    except IsADirectoryError:
        raise OutputError(f"cannot write {path}: it is a directory") from None
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None


def check_writable(path: str | Path) -> None:
    """Fail now, not after a whole synthesis, when `path` cannot be created or written.

    A regular file (or a new one) is opened for appending and closed again, a new one removed;
    other existing files (a FIFO, /dev/stdout) are left to the real open, which must not block here.
    """
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    if target.exists() and not target.is_file():
        return
    existed = target.exists()
    try:
        with open(target, "ab"):
            pass
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    if not existed:
        target.unlink(missing_ok=True)


def write_audio_file(path: str | Path, audio: np.ndarray, fmt: str, *, sample_rate: int | None = None,
                     sample_format: str = "s16") -> None:
    """Encode `audio` (32 kHz float32) to `path` in `fmt`."""
    from soprano_cli.audio.formats import open_encoder

    with open_output(path) as sink:
        encoder = open_encoder(fmt, sink, input_rate=SAMPLE_RATE, output_rate=sample_rate,
                               sample_format=sample_format, seekable=True)
        encoder.write(audio)
        encoder.close()
