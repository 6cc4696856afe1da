"""The sentence-batch driver: every front end's sentences go through one of these on their way to audio.

`Engine.generate`, `Engine.stream` and the server's scheduler each drive a `SentenceBatch`; it owns
what they share, so that the same request gives the same audio whichever way it came:

- admission: a sentence joins the running LM batch whenever there is `room` (`add`);
- retries: a sentence whose audio has not left yet (whole-sentence requests) and that hit the
  token cap or looped is generated again, up to `params.retries` times;
- decoding, by the request's `chunk_frames` (see chunk_decoding.py): whole sentences when they
  end, fixed chunks of N frames, or growing chunks batched across every sentence of the step;
- delivery: each request's chunks in sentence order (or as they are decoded, if it asks).

What it leaves to its callers: which request's sentence goes next (the scheduler's fairness),
threads, and cancellation policy.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from soprano_cli.engine.chunk_decoding import (DueChunk, GrowingChunks, SentenceStreamer, decode_due,
                                               decode_whole)
from soprano_cli.engine.generate import BatchGenerator, Generation
from soprano_cli.engine.results import AudioChunk
from soprano_cli.engine.sampling import MAX_NEW_TOKENS, SamplingParams

log = logging.getLogger(__name__)


class Request:
    """One caller's sentences in the batch; `take()` hands out its chunks as they may leave.

    `chunk_frames`: None for growing chunks, up to MAX_NEW_TOKENS for fixed chunks, anything
    larger for whole sentences. `decode=False` (whole sentences only) keeps frames and leaves
    decoding to the caller (`Engine.synthesize` decodes a whole batch at once).
    """

    def __init__(self, params: SamplingParams, chunk_frames: int | None, *, in_order: bool = True,
                 decode: bool = True, label: str = "", warn_at_own_cap: bool = True):
        self.params = params
        self.chunk_frames = chunk_frames
        self.whole = chunk_frames is not None and chunk_frames > MAX_NEW_TOKENS
        self.in_order = in_order
        self.decode = decode
        self.label = label  # names the request in warnings ("request 3, ")
        # False: a sentence stopped by a max_new_tokens the caller set below the model's cap is not
        # warned about (a server's clients ask for it; its log need not repeat it per request).
        self.warn_at_own_cap = warn_at_own_cap
        self.open: deque[Sentence] = deque()  # added, not yet fully handed out, in sentence order
        self.ready: list[AudioChunk] = []
        self.cancelled = False

    def take(self) -> list[AudioChunk]:
        """The chunks that may leave now (in sentence order unless `in_order` is False)."""
        ready, self.ready = self.ready, []
        return ready

    @property
    def idle(self) -> bool:
        """Every sentence added so far has been handed out in full."""
        return not self.open and not self.ready

    def _collect(self) -> None:
        """Move what may leave into `ready`: in order, a sentence's chunks once those before it are done."""
        if self.in_order:
            while self.open:
                sentence = self.open[0]
                self.ready += sentence.chunks
                sentence.chunks = []
                if not sentence.done:
                    return
                self.open.popleft()
            return
        for sentence in list(self.open):
            self.ready += sentence.chunks
            sentence.chunks = []
            if sentence.done:
                self.open.remove(sentence)


@dataclass(eq=False)
class Sentence:
    """One sentence of a request, across its attempts; also its key in the generator."""

    request: Request
    index: int  # the caller's sentence index (seeds sampling, labels chunks)
    text: str
    prompt: list[int]
    attempt: int = 0
    sequence: Generation | None = None  # the attempt in the batch (the last one, once done)
    chunks: list[AudioChunk] = field(default_factory=list)  # decoded, waiting to leave
    done: bool = False
    streamer: SentenceStreamer | None = None  # fixed chunks
    growing: GrowingChunks | None = None  # growing chunks


class SentenceBatch:
    """Drives one `BatchGenerator` over an engine's LM for any number of requests."""

    def __init__(self, engine):
        self.engine = engine
        self.generator: BatchGenerator = engine.new_generator()
        self.frames = 0  # frames generated so far (metrics)

    @property
    def room(self) -> int:
        """Sentences that can join now without waiting for a slot."""
        return self.generator.max_batch - len(self.generator.waiting) - len(self.generator.active)

    @property
    def idle(self) -> bool:
        return self.generator.idle

    @property
    def active(self) -> int:
        return len(self.generator.active)

    def add(self, request: Request, text: str, index: int) -> Sentence:
        """Queue one sentence of `request`; it joins the batch at the next step."""
        sentence = Sentence(request, index, text, self.engine.prompt_ids(text))
        request.open.append(sentence)
        self._start(sentence)
        return sentence

    def _start(self, sentence: Sentence) -> None:
        request = sentence.request
        if request.chunk_frames is None:
            sentence.growing = GrowingChunks()
        elif not request.whole:
            sentence.streamer = SentenceStreamer(self.engine.decoder, sentence.index, sentence.text,
                                                 request.chunk_frames)
        retries = request.params.retries if request.whole else 0
        # Stopping a loop early is only worth it when the sentence will be generated again.
        sentence.sequence = Generation(key=sentence, prompt=sentence.prompt, params=request.params,
                                       index=sentence.index, attempt=sentence.attempt,
                                       stop_on_hallucination=sentence.attempt < retries)
        self.generator.add(sentence.sequence)

    def cancel(self, request: Request) -> None:
        """Drop a request's sentences, waiting or generating; nothing more of it is handed out."""
        request.cancelled = True
        for sentence in request.open:
            if not sentence.done:
                self.generator.cancel(sentence)
        request.open.clear()
        request.ready = []

    def step(self) -> list[Request]:
        """One LM step for the whole batch, then the decoding it made due; returns the requests
        that have chunks to take."""
        ended: list[Sentence] = []  # whole sentences to decode
        due: list[tuple[Sentence, DueChunk]] = []  # growing chunks to decode
        touched: dict[int, Request] = {}
        for event in self.generator.step():
            sequence, sentence = event.sequence, event.sequence.key
            if sentence.sequence is not sequence or sentence.request.cancelled:
                continue  # an attempt given up on, or a request dropped while the step ran
            self.frames += event.frame is not None
            if event.finished and self._retry(sentence):
                continue
            request = sentence.request
            touched[id(request)] = request
            if request.whole:
                if event.finished:
                    ended.append(sentence)
            elif sentence.streamer is not None:
                chunk = sentence.streamer.push(event.frame, event.finished, sequence.finish_reason)
                if chunk is not None:
                    chunk.hallucinated = sequence.hallucinated
                    sentence.chunks.append(chunk)
            else:
                span = sentence.growing.push(self.engine.decoder, event.frame, event.finished)
                if span is not None and span[0] > sentence.growing.emitted:
                    due.append((sentence, DueChunk(sentence.growing, *span)))
                elif event.finished:  # nothing left to decode: an empty final chunk closes the sentence
                    sentence.chunks.append(self._chunk(sentence, np.zeros(0, dtype=np.float32)))
            if event.finished:
                sentence.done = True
                sentence.streamer = None
                self._warn_if_unfinished(sentence)
        self._decode_ended(ended)
        if due:
            for (sentence, item), audio in zip(due, decode_due(self.engine.decoder, [item for _, item in due])):
                sentence.chunks.append(self._chunk(sentence, audio, final=sentence.done, frames=item.count))
        for request in touched.values():
            request._collect()
        return [request for request in touched.values() if request.ready]

    def _retry(self, sentence: Sentence) -> bool:
        """Generate a whole sentence again if it hit the token cap or looped and retries are left."""
        sequence, request = sentence.sequence, sentence.request
        retries = request.params.retries if request.whole else 0
        if sequence.finish_reason not in ("length", "hallucination") or sentence.attempt >= retries:
            return False
        log.warning("%ssentence %d %s; regenerating (attempt %d of %d)", request.label, sentence.index + 1,
                    _describe(sequence), sentence.attempt + 2, retries + 1)
        sentence.attempt += 1
        self._start(sentence)
        return True

    def _decode_ended(self, ended: list[Sentence]) -> None:
        """Whole sentences that ended in this step, decoded together (Engine.decode's rule)."""
        if not any(s.request.decode for s in ended):
            return
        ended = [s for s in ended if s.request.decode]
        width = self.engine.lm.config.hidden_size
        frame_lists = [torch.stack(s.sequence.frames) if s.sequence.frames else torch.zeros(0, width) for s in ended]
        audio = decode_whole(self.engine.decoder, frame_lists, self.engine.config.decoder_batch_size,
                             self.engine.device)
        for sentence, samples in zip(ended, audio):
            sentence.chunks.append(self._chunk(sentence, samples))

    @staticmethod
    def _chunk(sentence: Sentence, audio: np.ndarray, final: bool = True, frames: int | None = None) -> AudioChunk:
        sequence = sentence.sequence
        return AudioChunk(sentence=sentence.index, text=sentence.text, audio=audio, final=final,
                          frames=len(sequence.frames) if frames is None else frames,
                          finish_reason=(sequence.finish_reason or "stop") if final else None,
                          hallucinated=sequence.hallucinated)

    @staticmethod
    def _warn_if_unfinished(sentence: Sentence) -> None:
        sequence = sentence.sequence
        own_cap = sequence.finish_reason == "length" and sequence.params.max_new_tokens < MAX_NEW_TOKENS
        if own_cap and not sequence.hallucinated and not sentence.request.warn_at_own_cap:
            return
        if sequence.finish_reason != "stop" or sequence.hallucinated:
            log.warning("%ssentence %d %s: %r", sentence.request.label, sentence.index + 1, _describe(sequence),
                        _shorten(sentence.text))


def _describe(sequence: Generation) -> str:
    if sequence.finish_reason == "length":
        return f"hit the {sequence.params.max_new_tokens}-token cap without ending"
    return "looks hallucinated (a run of near-identical frames)"


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
