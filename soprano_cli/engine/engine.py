"""The engine facade the CLI, the server and the Python API all use: load once, then synthesize or stream."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from soprano_cli.engine import checkpoint
from soprano_cli.engine.config import CPU_DECODER_BATCH, CPU_MAX_BATCH, CUDA_DECODER_BATCH, CUDA_MAX_BATCH, EngineConfig
from soprano_cli.engine.decoder import DECODE_BLOCK, IncrementalDecoder, SopranoDecoder, decode_frames
from soprano_cli.engine.devices import select_device, to_host
from soprano_cli.engine.generate import BatchGenerator, Generation
from soprano_cli.engine.loading import load_model
from soprano_cli.engine.memory import release_free_memory
from soprano_cli.engine.prefetch import Prefetch
from soprano_cli.engine.quantize import DynamicInt8Linear
from soprano_cli.engine.results import AudioChunk, SentenceAudio
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import InvalidParameterError
from soprano_cli.model_facts import SAMPLE_RATE

log = logging.getLogger(__name__)



class SentenceStreamer:
    """Turns one sentence's frames, as they arrive, into exact audio chunks.

    Frames go through an `IncrementalDecoder`, so each decoder layer computes each step once.
    Live chunk sizes (up to the 512-frame cap) emit audio every `chunk_frames` frames; a larger
    chunk size means "whole sentences": frames are decoded in blocks as they arrive and the
    sentence's audio comes out as one chunk at its end.
    """

    def __init__(self, decoder: SopranoDecoder, index: int, text: str, chunk_frames: int = 1):
        from soprano_cli.engine.sampling import MAX_NEW_TOKENS

        self.decoder = decoder
        self.index = index
        self.text = text
        self.whole = chunk_frames > MAX_NEW_TOKENS
        self.block = DECODE_BLOCK if self.whole else chunk_frames
        self.incremental = IncrementalDecoder(decoder)
        # No sample is final before the decoder's look-ahead is covered: hand it those frames at once.
        self.first_audio_frames = next(t for t in range(1, 1 << 16) if decoder.ready_samples(t, False) > 0)
        self.frames: list[torch.Tensor] = []  # waiting for the decoder
        self.pieces: list[torch.Tensor] = []  # decoded, waiting for the end (whole sentences)
        self.count = 0  # frames seen
        self.done = False

    def push(self, frame: torch.Tensor | None, finished: bool, finish_reason: str | None = None) -> AudioChunk | None:
        """Add a frame (None when the step ended the sentence); return a chunk when one is due."""
        if frame is not None:
            self.frames.append(frame)
            self.count += 1
        if not finished and (len(self.frames) < self.block or self.count < self.first_audio_frames):
            return None
        device = self.decoder.head.out.weight.device
        batch = torch.stack(self.frames).to(device) if self.frames else None
        self.frames = []
        self.pieces.append(to_host(self.incremental.push(batch, finished)))
        self.done = finished
        if finished:
            release_free_memory()  # as in decode_frames
        if self.whole and not finished:
            return None
        audio = torch.cat(self.pieces).numpy().astype(np.float32, copy=False)
        self.pieces = []
        if not audio.size and not finished:
            return None
        return AudioChunk(sentence=self.index, text=self.text, audio=audio, final=finished, frames=self.count,
                          finish_reason=finish_reason if finished else None)


class Engine:
    """A loaded Soprano model: tokenizer, LM and decoder on one device."""

    sample_rate = SAMPLE_RATE

    def __init__(self, *, lm, decoder: SopranoDecoder, tokenizer, config: EngineConfig, model_dir: Path,
                 device: torch.device, backend: str, dtype: str = "float32"):
        self.lm = lm
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.config = config
        self.model_dir = model_dir
        self.device = device
        self.backend = backend
        self.dtype = dtype  # the weight precision in use (what `auto` resolved to)
        self.decoder_dtype = ("int8" if any(isinstance(m, DynamicInt8Linear) for m in decoder.modules())
                              else "bfloat16" if decoder.compute_dtype == torch.bfloat16 else "float32")
        self.eos_token_id = lm.config.eos_token_id

    @classmethod
    def load(cls, config: EngineConfig | None = None, **overrides) -> "Engine":
        """Resolve, load and place the model; raises SopranoError subclasses on any problem."""
        config = config or EngineConfig()
        for key, value in overrides.items():
            setattr(config, key, value)
        device = select_device(config.device)
        # A GPU runs wide batches for little more than narrow ones; a CPU's step grows with the batch.
        wide = device.type == "cuda"
        config = replace(config)  # the caller's stays as given
        if config.max_batch is None:
            config.max_batch = CUDA_MAX_BATCH if wide else CPU_MAX_BATCH
        if config.decoder_batch_size is None:
            config.decoder_batch_size = CUDA_DECODER_BATCH if wide else CPU_DECODER_BATCH
        if config.max_batch < 1 or config.decoder_batch_size < 1:
            raise InvalidParameterError("max_batch and decoder_batch_size must be at least 1")
        loaded = load_model(config, device)
        return cls(lm=loaded.lm, decoder=loaded.decoder, tokenizer=loaded.tokenizer, config=config,
                   model_dir=loaded.folder, device=device, backend=loaded.backend, dtype=loaded.dtype)

    # -- text -> prompt -----------------------------------------------------------------------

    def prompt_ids(self, sentence: str) -> list[int]:
        """Token ids of `[STOP][TEXT]{sentence}[START]`, the sentence cleaned to the model's alphabet."""
        from soprano_cli.text import model_text

        return self.tokenizer.encode(checkpoint.prompt_text(model_text(sentence))).ids

    def _sequence(self, index: int, text: str, params: SamplingParams, attempt: int = 0,
                  stop_on_hallucination: bool = False) -> Generation:
        return Generation(key=index, prompt=self.prompt_ids(text), params=params, index=index,
                          attempt=attempt, stop_on_hallucination=stop_on_hallucination)

    def new_generator(self) -> BatchGenerator:
        """A batch generator over this engine's LM (the server's scheduler drives one directly)."""
        if self.backend == "lmdeploy":  # lmdeploy schedules its own batches: the same interface over its requests
            from soprano_cli.engine.backends.lmdeploy import LMDeployGenerator

            return LMDeployGenerator(self.lm, max_batch=self.config.max_batch)
        return BatchGenerator(self.lm, max_batch=self.config.max_batch, device=self.device)

    def warm_up(self) -> None:
        """Pay first-call costs now (a daemon's start): a few frames through LM and decoder, and on
        CUDA every graph (each batch bucket and attention span, and the lone-prompt prefills), so
        the first requests run at full speed."""
        generator = self.new_generator()
        generator.add(self._sequence(0, "Warm up.", SamplingParams(max_new_tokens=4)))
        frames = []
        while not generator.idle:
            frames += [event.frame for event in generator.step() if event.frame is not None]
        if len(frames) > 1:
            self.decode([torch.stack(frames)])
        if getattr(self.lm, "cuda_graphs", None) is not None:
            self.lm.cuda_graphs.capture_all()

    # -- whole sentences ----------------------------------------------------------------------

    def generate(self, sentences: Sequence[str], params: SamplingParams | None = None) -> list[Generation]:
        """Generate every sentence's frames in one continuous batch, retrying suspicious ones."""
        params = (params or SamplingParams()).validated()
        generator = self.new_generator()
        results: list[Generation | None] = [None] * len(sentences)
        for index, text in enumerate(sentences):
            generator.add(self._sequence(index, text, params, stop_on_hallucination=params.retries > 0))
        while not generator.idle:
            for event in generator.step():
                if not event.finished:
                    continue
                sequence = event.sequence
                bad = sequence.finish_reason in ("length", "hallucination")
                if bad and sequence.attempt < params.retries:
                    log.warning("sentence %d %s; regenerating (attempt %d of %d)", sequence.index + 1,
                                _describe(sequence), sequence.attempt + 2, params.retries + 1)
                    generator.add(self._sequence(sequence.index, sentences[sequence.index], params,
                                                 sequence.attempt + 1, sequence.attempt + 1 < params.retries))
                    continue
                if bad or sequence.hallucinated:
                    log.warning("sentence %d %s: %r", sequence.index + 1, _describe(sequence),
                                _shorten(sentences[sequence.index]))
                results[sequence.index] = sequence
        return results  # type: ignore[return-value]

    def decode(self, frame_lists: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Frames (T, C) per sentence -> audio per sentence, `decoder_batch_size` sentences at a time."""
        if self.config.decoder_batch_size == 1:  # blockwise: faster and far smaller than one pass
            return [decode_frames(self.decoder, frames.to(self.device)) for frames in frame_lists]
        audio: list[np.ndarray | None] = [None] * len(frame_lists)
        order = sorted(range(len(frame_lists)), key=lambda i: -frame_lists[i].shape[0])
        size = self.config.decoder_batch_size
        for start in range(0, len(order), size):
            batch = [i for i in order[start:start + size] if frame_lists[i].shape[0] > 1]
            for i in order[start:start + size]:
                if frame_lists[i].shape[0] <= 1:
                    audio[i] = np.zeros(0, dtype=np.float32)
            if not batch:
                continue
            lengths = [frame_lists[i].shape[0] for i in batch]
            # Built where the decoder runs (the frames are usually there already).
            padded = torch.zeros(len(batch), max(lengths), frame_lists[batch[0]].shape[1], device=self.device)
            for row, i in enumerate(batch):
                padded[row, :lengths[row]] = frame_lists[i]
            out = to_host(self.decoder(padded, lengths))
            for row, i in enumerate(batch):
                audio[i] = out[row, :self.decoder.num_samples(lengths[row])].numpy().copy()
        return audio  # type: ignore[return-value]

    def synthesize(self, sentences: Sequence[str], params: SamplingParams | None = None) -> list[SentenceAudio]:
        """Audio for each sentence; batched, and each equal to synthesizing it alone."""
        sequences = self.generate(list(sentences), params)
        frames = [_stack(s.frames, self.lm.config.hidden_size) for s in sequences]
        audio = self.decode(frames)
        return [
            SentenceAudio(index=i, text=sentences[i], audio=audio[i], frames=len(s.frames),
                          finish_reason=s.finish_reason or "stop", hallucinated=s.hallucinated)
            for i, s in enumerate(sequences)
        ]

    # -- streaming ----------------------------------------------------------------------------

    def stream(self, sentences: Iterable[str], params: SamplingParams | None = None,
               chunk_frames: int = 1, in_order: bool = True) -> Iterator[AudioChunk]:
        """Audio chunks in sentence order as frames arrive; their concatenation is the batch audio.

        `sentences` may be a slow iterator (a pipe): it is read on a thread, and a sentence joins
        the running batch as soon as it arrives. Chunks of a later sentence wait until the earlier
        ones are out, unless `in_order` is False: then each chunk comes as soon as it is decoded
        (a whole sentence as soon as it ends) and its `sentence` index says where it belongs.
        Retries are not possible once audio has left, so suspicious sentences only warn.
        """
        params = (params or SamplingParams()).validated()
        if chunk_frames < 1:
            raise InvalidParameterError("chunk size must be at least 1 frame", param="chunk_frames")
        source = Prefetch(sentences)
        generator = self.new_generator()
        states: dict[int, SentenceStreamer] = {}
        pending: dict[int, list[AudioChunk]] = {}
        seen = next_out = 0  # sentences taken from the source; sentences fully yielded
        while True:
            # Take new sentences while there is room; wait for one only when there is nothing to do.
            while len(generator.waiting) + len(generator.active) < generator.max_batch:
                try:
                    text = source.get(block=generator.idle and not states)
                except StopIteration:
                    break
                if text is None:
                    break
                states[seen] = SentenceStreamer(self.decoder, seen, text, chunk_frames)
                pending[seen] = []
                generator.add(self._sequence(seen, text, params))
                seen += 1
            if generator.idle and not states and source.exhausted:
                return
            for event in generator.step():
                sequence = event.sequence
                chunk = states[sequence.key].push(event.frame, event.finished, sequence.finish_reason)
                if chunk is not None:
                    pending[sequence.key].append(chunk)
                if event.finished and (sequence.finish_reason != "stop" or sequence.hallucinated):
                    log.warning("sentence %d %s: %r", sequence.index + 1, _describe(sequence),
                                _shorten(states[sequence.key].text))
            if not in_order:
                for key in list(pending):
                    yield from pending[key]
                    pending[key] = []
                    if states[key].done:
                        del states[key], pending[key]
                continue
            while next_out in states:
                yield from pending[next_out]
                pending[next_out] = []
                if not states[next_out].done:
                    break
                del states[next_out], pending[next_out]
                next_out += 1


def _stack(frames: list[torch.Tensor], width: int) -> torch.Tensor:
    return torch.stack(frames) if frames else torch.zeros(0, width)


def _describe(sequence: Generation) -> str:
    if sequence.finish_reason == "length":
        return f"hit the {sequence.params.max_new_tokens}-token cap without ending"
    return "looks hallucinated (a run of near-identical frames)"


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
