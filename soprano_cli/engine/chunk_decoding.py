"""Frames to audio, the three ways a sentence-batch asks for it: whole sentences, fixed chunks, growing chunks.

- Whole sentences (`decode_whole`): each ended sentence's frames at once; on a CPU blockwise
  through an `IncrementalDecoder` (decoder.py's `decode_frames`), on a GPU in padded batches.
- Fixed chunks (`SentenceStreamer`): a chunk every N frames through the sentence's own
  `IncrementalDecoder`, so each decoder layer computes each step once.
- Growing chunks (`GrowingChunks`, `decode_due`): 1, 2, 4 ... `STREAM_MAX_FRAMES` frames; every
  chunk due after a step joins one padded decoder call. On a CPU the decoder, like the LM, mostly
  waits on reading its weights, so one call for sixteen sentences costs about what one costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from soprano_cli.engine.decoder import UPSAMPLE, IncrementalDecoder, SopranoDecoder, decode_frames
from soprano_cli.engine.devices import to_host
from soprano_cli.engine.memory import release_free_memory
from soprano_cli.engine.results import AudioChunk

# Growing chunks start small (a fast first byte) and double, since every chunk re-decodes a few
# frames of overlap: the first needs STREAM_FIRST_FRAMES frames, each later one twice the
# previous, up to STREAM_MAX_FRAMES.
STREAM_FIRST_FRAMES = 1
STREAM_MAX_FRAMES = 32


def decode_whole(decoder: SopranoDecoder, frame_lists: Sequence[torch.Tensor], batch_size: int,
                 device: torch.device) -> list[np.ndarray]:
    """Frames (T, C) per sentence -> audio per sentence, `batch_size` sentences per decoder pass."""
    if batch_size == 1:  # blockwise: faster and far smaller than one pass
        return [decode_frames(decoder, frames.to(device)) for frames in frame_lists]
    audio: list[np.ndarray | None] = [None] * len(frame_lists)
    order = sorted(range(len(frame_lists)), key=lambda i: -frame_lists[i].shape[0])
    for start in range(0, len(order), batch_size):
        batch = [i for i in order[start:start + batch_size] if frame_lists[i].shape[0] > 1]
        for i in order[start:start + batch_size]:
            if frame_lists[i].shape[0] <= 1:
                audio[i] = np.zeros(0, dtype=np.float32)
        if not batch:
            continue
        lengths = [frame_lists[i].shape[0] for i in batch]
        # Built where the decoder runs (the frames are usually there already).
        padded = torch.zeros(len(batch), max(lengths), frame_lists[batch[0]].shape[1], device=device)  # (B, T, C)
        for row, i in enumerate(batch):
            padded[row, :lengths[row]] = frame_lists[i]
        out = to_host(decoder(padded, lengths))
        for row, i in enumerate(batch):
            audio[i] = out[row, :decoder.num_samples(lengths[row])].numpy().copy()
    return audio  # type: ignore[return-value]


class SentenceStreamer:
    """Turns one sentence's frames, as they arrive, into exact audio chunks of `chunk_frames` frames.

    Frames go through an `IncrementalDecoder`, so each decoder layer computes each step once.
    """

    def __init__(self, decoder: SopranoDecoder, index: int, text: str, chunk_frames: int = 1):
        self.decoder = decoder
        self.index = index
        self.text = text
        self.block = chunk_frames
        self.incremental = IncrementalDecoder(decoder)
        # No sample is final before the decoder's look-ahead is covered: hand it those frames at once.
        self.first_audio_frames = next(t for t in range(1, 1 << 16) if decoder.ready_samples(t, False) > 0)
        self.frames: list[torch.Tensor] = []  # waiting for the decoder
        self.count = 0  # frames seen

    def push(self, frame: torch.Tensor | None, finished: bool, finish_reason: str | None = None) -> AudioChunk | None:
        """Add a frame (None when the step ended the sentence); return a chunk when one is due."""
        if frame is not None:
            self.frames.append(frame)
            self.count += 1
        if not finished and (len(self.frames) < self.block or self.count < self.first_audio_frames):
            return None
        device = self.decoder.device
        batch = torch.stack(self.frames).to(device) if self.frames else None
        self.frames = []
        samples = self.incremental.push(batch, finished)
        # A copy of pinned memory, as in decode_frames.
        audio = to_host(samples).numpy().astype(np.float32, copy=samples.is_cuda)
        if finished:
            release_free_memory()  # as in decode_frames
        elif not audio.size:
            return None
        return AudioChunk(sentence=self.index, text=self.text, audio=audio, final=finished, frames=self.count,
                          finish_reason=finish_reason if finished else None)


@dataclass
class GrowingChunks:
    """One sentence's frames so far and how much of its audio has gone out, for growing chunks."""

    frames: list[torch.Tensor] = field(default_factory=list)
    emitted: int = 0  # samples already sent
    frames_at_emit: int = 0
    chunk_frames: int = STREAM_FIRST_FRAMES

    def push(self, decoder: SopranoDecoder, frame: torch.Tensor | None, finished: bool) -> tuple[int, int] | None:
        """Add a frame; when a chunk is due, the (samples it ends at, frames it needs) to decode.

        `SentenceStreamer.push`'s rule, with the decoding left to `decode_due`, one call for a whole step.
        """
        if frame is not None:
            self.frames.append(frame)
        count = len(self.frames)
        if not finished and count - self.frames_at_emit < self.chunk_frames:
            return None
        return decoder.ready_samples(count, finished), count


@dataclass
class DueChunk:
    """Samples [state.emitted, stop) of a sentence, from its first `count` frames."""

    state: GrowingChunks
    stop: int
    count: int


def decode_due(decoder: SopranoDecoder, due: list[DueChunk]) -> list[np.ndarray]:
    """Every due chunk of a step in one padded decoder call (each row equals decoding it alone);
    advances each sentence's state and returns the chunks' samples."""
    windows, firsts = [], []
    for item in due:
        # The frames samples [emitted, stop) depend on, as SopranoDecoder.decode_span picks them.
        last_step = (item.stop - 1 + decoder.n_fft // 2) // decoder.hop
        first = decoder.first_frame_needed(item.state.emitted)
        last = min(item.count - 1, -(-(last_step + decoder.radius) // UPSAMPLE))
        windows.append(torch.stack(item.state.frames[first:last + 1]))
        firsts.append(first)
    lengths = [len(w) for w in windows]
    device = decoder.device
    padded = torch.zeros(len(windows), max(lengths), windows[0].shape[1], device=device)  # (B, T, C)
    for row, window in enumerate(windows):
        padded[row, :len(window)] = window
    audio = to_host(decoder(padded, lengths)).numpy()  # (B, (T-1) * samples_per_frame)
    pieces = []
    for row, item in enumerate(due):
        state = item.state
        base = firsts[row] * decoder.samples_per_frame
        pieces.append(audio[row, state.emitted - base:item.stop - base].copy())
        state.emitted, state.frames_at_emit = item.stop, item.count
        state.chunk_frames = min(state.chunk_frames * 2, STREAM_MAX_FRAMES)
    return pieces
