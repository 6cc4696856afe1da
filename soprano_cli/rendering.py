"""Rendering engine output: audio chunks -> encoder, speakers and captions, with sentence silence and stats.

What both synth runs share once the engine has spoken: synth_single.py drives one Renderer for
its output, synth_batch.py one per output file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soprano_cli.errors import OutputError
from soprano_cli.interrupts import deferred_signals
from soprano_cli.model_facts import SAMPLE_RATE

log = logging.getLogger(__name__)


@dataclass
class RenderStats:
    """What a render produced, timed from its start."""

    sentences: int = 0  # written
    finished: int = 0  # ended, written or held until an earlier sentence ends
    samples: int = 0  # written, at the model's 32 kHz, silence included
    generated: int = 0  # samples received from the engine, silence excluded
    cues: list = field(default_factory=list)  # (start s, end s, text) per spoken sentence
    first_audio_seconds: float | None = None  # wall time until the first audio left
    elapsed: float = 0.0

    @property
    def audio_seconds(self) -> float:
        return self.samples / SAMPLE_RATE


class Renderer:
    """Writes chunks in sentence order to an encoder and/or a player; inserts silence between sentences.

    Chunks may arrive out of order (`Engine.stream(in_order=False)`): a sentence that ends before
    an earlier one is held and written as soon as the earlier ones are out. On Ctrl-C, every held
    sentence that had ended is written too (in order, without the unfinished ones between), so an
    interrupted file keeps every finished sentence.
    """

    def __init__(self, encoder=None, player=None, sentence_silence: float = 0.0, on_progress=None, shaper=None):
        from soprano_cli.audio.post import AudioOptions, SentenceAudio

        self.encoder = encoder
        self.player = player
        # Speed, gain and the pauses before each sentence (audio/post.py); without one, only
        # `sentence_silence` between sentences.
        self.shaper = shaper or SentenceAudio(AudioOptions(), SAMPLE_RATE, sentence_silence=sentence_silence)
        self.stats = RenderStats()
        self.on_progress = on_progress  # called with the stats after each chunk, e.g. a progress display
        self._started = time.perf_counter()
        self._cue_start: float | None = None
        self._next = 0  # the sentence whose chunks are written now
        self._held: dict[int, list] = {}  # chunks of later sentences, by sentence index

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

    def _write(self, chunk) -> None:
        # A signal waits for the whole chunk (the encoder defers it anyway), so that a sentence in
        # the file is also counted and cued; not with a player, whose writes may block for a while.
        with deferred_signals() if self.player is None else contextlib.nullcontext():
            self._write_now(chunk)

    def _write_now(self, chunk) -> None:
        if self._cue_start is None and chunk.audio.size:
            self._emit(self.shaper.begin(chunk.sentence))  # the pause before it
            self._cue_start = self.stats.samples / SAMPLE_RATE
        self._emit(self.shaper.audio(chunk.audio, chunk.final) if self._cue_start is not None else chunk.audio)
        if chunk.final:
            self.stats.sentences += 1
            if self._cue_start is not None:
                self.stats.cues.append((self._cue_start, self.stats.samples / SAMPLE_RATE, chunk.text))
            self._cue_start = None

    def _take(self, chunk) -> None:
        if chunk.sentence != self._next:
            self._held.setdefault(chunk.sentence, []).append(chunk)
            return
        self._write(chunk)
        while chunk.final:
            self._next += 1
            held = self._held.get(self._next, [])
            if not (held and held[-1].final):
                return  # the next sentence's chunks are not all here yet
            del self._held[self._next]
            for chunk in held:
                self._write(chunk)

    def _write_finished_held(self) -> None:
        """Write every held sentence that had ended, in order, leaving out unfinished ones."""
        finished = sorted(i for i, chunks in self._held.items() if chunks[-1].final)
        if not finished:
            return
        missing = [i + 1 for i in range(self._next, finished[-1]) if i not in finished]
        log.warning("interrupted: wrote finished sentence%s %s without unfinished sentence%s %s before %s",
                    "s" if len(finished) > 1 else "", _numbers([i + 1 for i in finished]),
                    "s" if len(missing) > 1 else "", _numbers(missing), "them" if len(finished) > 1 else "it")
        self._cue_start = None  # an unfinished sentence's partial audio (live chunks) has no cue
        for index in finished:
            for chunk in self._held.pop(index):
                self._write(chunk)

    def take(self, chunk) -> None:
        """Write one engine `AudioChunk` now, or hold it until the sentences before it are out."""
        self._take(chunk)
        self.stats.generated += chunk.audio.size
        if chunk.final:
            self.stats.finished += 1
            log.info("sentence %d finished: %.2f s of audio", chunk.sentence + 1, chunk.audio.size / SAMPLE_RATE)
        if self.on_progress is not None:
            self.stats.elapsed = time.perf_counter() - self._started
            self.on_progress(self.stats)

    def interrupted(self) -> None:
        """After Ctrl-C: write the held sentences that had ended (see the class docstring)."""
        self._write_finished_held()

    def finish(self) -> None:
        """After the last sentence: the pause the markup asked for there."""
        self._write_now_audio(self.shaper.end())

    def _write_now_audio(self, audio: np.ndarray) -> None:
        with deferred_signals() if self.player is None else contextlib.nullcontext():
            self._emit(audio)

    def feed(self, chunks: Iterable) -> RenderStats:
        """Consume engine `AudioChunk`s to the end; returns the stats (also on self.stats)."""
        try:
            for chunk in chunks:
                self.take(chunk)
            self.finish()
        except KeyboardInterrupt:
            self._write_finished_held()
            raise
        finally:
            self.stats.elapsed = time.perf_counter() - self._started
        return self.stats


def _numbers(numbers: list[int]) -> str:
    """'1, 3-5, 9' from sorted numbers."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


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
