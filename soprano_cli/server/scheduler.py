"""Continuous batching across HTTP requests: every request's sentences share one LM batch.

One worker thread owns the engine's `BatchGenerator` and steps it while there is work. Requests
hand their sentences over with `submit()`; as cache slots free up, sentences of the waiting
requests are fed in round-robin (so a long text does not starve a short one). Each frame goes
to its sentence's `SentenceStreamer`; the audio chunks go back to the request's asyncio queue in
sentence order. Cancelling a request drops its sentences from the batch before the next step.

Streamed API requests decode their chunks together: every sentence whose chunk is due after a
step joins one padded decoder call. On CPU the decoder, like the LM, mostly waits on reading its
weights, so one call for sixteen sentences costs about what one sentence costs. Requests that ask
for fixed chunks (the daemon path of `soprano synth`) use the engine's own SentenceStreamer, one
sentence at a time, so their floats are exactly the in-process ones.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import torch

from soprano_cli.engine.decoder import UPSAMPLE
from soprano_cli.engine.engine import AudioChunk, Engine, SentenceStreamer, to_host
from soprano_cli.engine.generate import Generation
from soprano_cli.engine.sampling import MAX_NEW_TOKENS, SamplingParams
from soprano_cli.errors import SopranoError
from soprano_cli.server import limits

log = logging.getLogger(__name__)

# Streamed chunks start small (a fast first byte) and grow, since every chunk re-decodes a few
# frames of overlap: the first chunk needs STREAM_FIRST_FRAMES frames, each later one twice the
# previous, up to STREAM_MAX_FRAMES.
STREAM_FIRST_FRAMES = 1
STREAM_MAX_FRAMES = 32


class QueueFullError(SopranoError):
    """More requests waiting for the batch than the server accepts (HTTP 429)."""

    http_status = 429
    error_type = "rate_limit_error"
    error_code = "rate_limit_exceeded"


@dataclass
class Output:
    """One chunk for a request, with what the chunk stream reports besides the audio."""

    chunk: AudioChunk
    hallucinated: bool = False


@dataclass
class _Sentence:
    index: int  # the caller's sentence index (seeds sampling, labels chunks)
    text: str
    streamer: SentenceStreamer | None = None
    key: object | None = None  # the live Generation's key in the generator
    attempt: int = 0
    chunks: list[Output] = field(default_factory=list)  # waiting for earlier sentences to finish
    done: bool = False
    # The batched-decode path (see _decode_due): frames so far and what has been turned into audio.
    frames: list[torch.Tensor] = field(default_factory=list)
    emitted: int = 0  # samples already sent
    frames_at_emit: int = 0
    chunk_frames: int = STREAM_FIRST_FRAMES


@dataclass
class _Due:
    """A chunk to decode after this step: samples [start, stop) of a sentence from `count` frames."""

    job: "Job"
    sentence: _Sentence
    stop: int
    count: int
    finished: bool
    finish_reason: str | None
    hallucinated: bool


class Job:
    """One request's sentences on their way through the batch; iterate `outputs()` for its chunks."""

    _ids = itertools.count(1)

    def __init__(self, sentences: list[str], params: SamplingParams, *, start_index: int, chunk_frames: int | None,
                 whole: bool, loop: asyncio.AbstractEventLoop, on_drained=None):
        self.id = next(self._ids)
        self.params = params
        self.whole = whole  # one chunk per sentence, decoded in one piece, with retries
        self.chunk_frames = chunk_frames  # None: start small and grow (streaming)
        self.sentences = [_Sentence(start_index + i, text) for i, text in enumerate(sentences)]
        self.next_feed = 0  # next sentence to hand to the generator
        self.next_out = 0  # next sentence whose chunks may leave
        self.started = False  # a sentence of it has entered the generator
        self.cancelled = False
        self.finished = False
        self.samples = 0  # audio samples emitted
        self.backlog = 0  # samples handed over that the response has not taken yet
        self._backlog_lock = threading.Lock()
        self._on_drained = on_drained  # wakes the worker: a throttled job may be fed again
        self._loop = loop
        self._queue: asyncio.Queue = asyncio.Queue()

    def _put(self, item) -> None:
        """From the worker thread: hand an Output, an exception or None (the end) to the request."""
        if isinstance(item, Output):
            with self._backlog_lock:
                self.backlog += len(item.chunk.audio)
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    async def outputs(self) -> AsyncIterator[Output]:
        """The request's chunks in order; raises what the worker reported."""
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            with self._backlog_lock:
                self.backlog -= len(item.chunk.audio)
            if self._on_drained is not None:
                self._on_drained()
            yield item


class Scheduler:
    """Owns the batch generator and its worker thread."""

    def __init__(self, engine: Engine, *, max_queue: int = limits.MAX_QUEUE,
                 max_backlog_seconds: float = limits.MAX_BACKLOG_SECONDS, metrics=None):
        self.engine = engine
        self.max_queue = max_queue  # requests allowed to wait for a place in the batch
        # A request whose reader lags this much audio behind gets no new sentences into the batch
        # until it catches up: a slow reader costs bounded memory, a real-time player still plays.
        self.max_backlog = int(max_backlog_seconds * engine.sample_rate)
        self.metrics = metrics
        self._generator = engine.new_generator()
        self._cond = threading.Condition()
        self._inbox: list[Job] = []  # submitted, not yet seen by the worker
        self._cancels: list[Job] = []
        self._waiting = 0  # submitted jobs with no sentence in the generator yet
        self._stopping = False
        self._feed: deque[Job] = deque()  # jobs with sentences left to feed (worker only)
        self._live: dict[int, tuple[Job, _Sentence]] = {}  # id(sequence key) -> owner (worker only)
        self._throttled = False  # some job in the feed waits for its reader (worker sets, responses read)
        self._thread: threading.Thread | None = None

    # -- called from the event loop -------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="soprano-scheduler", daemon=True)
        self._thread.start()

    def submit(self, sentences: list[str], params: SamplingParams, *, start_index: int = 0,
               chunk_frames: int | None = None, whole: bool = False) -> Job:
        """Queue a request's sentences; raises QueueFullError when `max_queue` requests already wait."""
        job = Job(sentences, params, start_index=start_index, chunk_frames=chunk_frames, whole=whole,
                  loop=asyncio.get_running_loop(), on_drained=self._drained)
        with self._cond:
            if self._stopping:
                raise QueueFullError("the server is shutting down")
            if self._waiting >= self.max_queue:
                raise QueueFullError(f"too many requests waiting ({self._waiting}); try again shortly")
            self._waiting += 1
            self._inbox.append(job)
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Drop a request's remaining work (its client went away); takes effect before the next step."""
        with self._cond:
            if job.finished or job.cancelled:
                return
            job.cancelled = True
            self._cancels.append(job)
            self._cond.notify()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish what is in the batch, fail anything still queued, and end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def queue_depth(self) -> int:
        return self._waiting

    def _drained(self) -> None:
        """A response took audio: wake the worker if some request is waiting for its reader."""
        if self._throttled:
            with self._cond:
                self._cond.notify()

    # -- the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cond:
                while not (self._inbox or self._cancels or self._feedable() or self._stopping) and self._generator.idle:
                    self._cond.wait()
                inbox, self._inbox = self._inbox, []
                cancels, self._cancels = self._cancels, []
                if self._stopping and self._generator.idle and not self._feed and not inbox:
                    break
            for job in cancels:
                self._drop(job)
            self._feed.extend(job for job in inbox if not job.cancelled)
            self._fill()
            try:
                events = self._generator.step()
                frames = 0
                due: list[_Due] = []
                touched: dict[int, Job] = {}
                for event in events:
                    frames += event.frame is not None
                    job = self._route(event, due)
                    if job is not None:
                        touched[id(job)] = job
                self._decode_due(due)
                for job in touched.values():
                    self._flush(job)
            except Exception as error:  # a failing step must not kill the thread: fail its requests instead
                log.exception("generation failed")
                self._fail_all(error)
                events, frames = [], 0
            self._report(steps=1 if events else 0, frames=frames)
        self._fail_all(QueueFullError("the server is shutting down"))

    def _report(self, steps: int = 0, frames: int = 0) -> None:
        if self.metrics is not None:
            jobs = {id(job): job for job, _ in self._live.values()}
            jobs.update((id(job), job) for job in self._feed)
            buffered = sum(job.backlog for job in jobs.values()) / self.engine.sample_rate
            self.metrics.scheduler_state(queue_depth=self._waiting, active=len(self._generator.active),
                                         buffered_seconds=buffered,
                                         steps=steps, frames=frames)

    def _feedable(self) -> bool:
        """Whether some request in the feed may send a sentence now (its reader is not too far behind)."""
        throttled = [job.backlog > self.max_backlog for job in self._feed]
        self._throttled = any(throttled)
        return not all(throttled)

    def _fill(self) -> None:
        """Feed sentences round-robin across requests while the generator has free slots."""
        generator = self._generator
        passed = 0  # throttled jobs rotated past in a row: all of them means nothing to feed
        while self._feed and passed < len(self._feed) and len(generator.waiting) + len(generator.active) < generator.max_batch:
            job = self._feed.popleft()
            if job.cancelled:
                continue
            if job.backlog > self.max_backlog:
                self._feed.append(job)
                passed += 1
                continue
            passed = 0
            sentence = job.sentences[job.next_feed]
            job.next_feed += 1
            self._add(job, sentence)
            if not job.started:
                job.started = True
                with self._cond:
                    self._waiting -= 1
            if job.next_feed < len(job.sentences):
                self._feed.append(job)

    def _add(self, job: Job, sentence: _Sentence) -> None:
        sentence.key = object()
        if not job.whole and job.chunk_frames is not None:
            sentence.streamer = SentenceStreamer(self.engine.decoder, sentence.index, sentence.text, job.chunk_frames)
        self._live[id(sentence.key)] = (job, sentence)
        self._generator.add(Generation(key=sentence.key, prompt=self.engine.prompt_ids(sentence.text),
                                       params=job.params, index=sentence.index, attempt=sentence.attempt,
                                       stop_on_hallucination=job.whole and sentence.attempt < job.params.retries))

    def _route(self, event, due: list[_Due]) -> Job | None:
        """Take one frame event; returns the job it touched (its chunks are flushed after decoding)."""
        sequence = event.sequence
        owner = self._live.get(id(sequence.key))
        if owner is None or owner[1].key is not sequence.key:
            return None
        job, sentence = owner
        chunk = None
        if job.whole:
            if event.finished:
                if sequence.finish_reason in ("length", "hallucination") and sentence.attempt < job.params.retries:
                    log.warning("sentence %d %s; regenerating", sentence.index + 1, sequence.finish_reason)
                    del self._live[id(sequence.key)]
                    sentence.attempt += 1
                    self._add(job, sentence)
                    return None
                # Decoded exactly as Engine.synthesize does, so a daemon's file equals an in-process one.
                frames = (torch.stack(sequence.frames) if sequence.frames
                          else torch.zeros(0, self.engine.lm.config.hidden_size))
                audio = self.engine.decode([frames])[0]
                chunk = AudioChunk(sentence=sentence.index, text=sentence.text, audio=audio, final=True,
                                   frames=len(sequence.frames), finish_reason=sequence.finish_reason or "stop")
        elif sentence.streamer is not None:
            chunk = sentence.streamer.push(event.frame, event.finished, sequence.finish_reason)
        else:
            self._queue_decode(job, sentence, event, due)
        if chunk is not None:
            sentence.chunks.append(Output(chunk, sequence.hallucinated))
        if event.finished:
            sentence.streamer = None
            del self._live[id(sequence.key)]
            capped = sequence.finish_reason == "length" and job.params.max_new_tokens < MAX_NEW_TOKENS
            if (sequence.finish_reason != "stop" or sequence.hallucinated) and not capped:
                log.warning("request %d, sentence %d: %s%s", job.id, sentence.index + 1, sequence.finish_reason,
                            " (looks hallucinated)" if sequence.hallucinated else "")
            if not any(d.sentence is sentence for d in due):
                sentence.done = True
        return job

    def _queue_decode(self, job: Job, sentence: _Sentence, event, due: list[_Due]) -> None:
        """SentenceStreamer.push's rule, with the decoding itself deferred to one call for the whole step."""
        if event.frame is not None:
            sentence.frames.append(event.frame)
        count = len(sentence.frames)
        if not event.finished and count - sentence.frames_at_emit < sentence.chunk_frames:
            return
        ready = self.engine.decoder.ready_samples(count, event.finished)
        if ready > sentence.emitted:
            due.append(_Due(job, sentence, ready, count, event.finished, event.sequence.finish_reason,
                            event.sequence.hallucinated))
        elif event.finished:
            chunk = AudioChunk(sentence=sentence.index, text=sentence.text, audio=np.zeros(0, dtype=np.float32),
                               final=True, frames=count, finish_reason=event.sequence.finish_reason)
            sentence.chunks.append(Output(chunk, event.sequence.hallucinated))
            sentence.frames = []

    def _decode_due(self, due: list[_Due]) -> None:
        """Decode every due chunk of this step in one padded decoder call (rows equal decoding alone)."""
        if not due:
            return
        decoder = self.engine.decoder
        windows, firsts = [], []
        for item in due:
            # The frames samples [emitted, stop) depend on, as SopranoDecoder.decode_span picks them.
            last_step = (item.stop - 1 + decoder.n_fft // 2) // decoder.hop
            first = decoder.first_frame_needed(item.sentence.emitted)
            last = min(item.count - 1, -(-(last_step + decoder.radius) // UPSAMPLE))
            windows.append(torch.stack(item.sentence.frames[first:last + 1]))
            firsts.append(first)
        lengths = [len(w) for w in windows]
        device = decoder.head.out.weight.device
        padded = torch.zeros(len(windows), max(lengths), windows[0].shape[1], device=device)  # (B, T, C)
        for row, window in enumerate(windows):
            padded[row, :len(window)] = window
        audio = to_host(decoder(padded, lengths)).numpy()  # (B, (T-1) * samples_per_frame)
        for row, item in enumerate(due):
            sentence = item.sentence
            base = firsts[row] * decoder.samples_per_frame
            samples = audio[row, sentence.emitted - base:item.stop - base].copy()
            sentence.emitted, sentence.frames_at_emit = item.stop, item.count
            sentence.chunk_frames = min(sentence.chunk_frames * 2, STREAM_MAX_FRAMES)
            chunk = AudioChunk(sentence=sentence.index, text=sentence.text, audio=samples, final=item.finished,
                               frames=item.count, finish_reason=item.finish_reason if item.finished else None)
            sentence.chunks.append(Output(chunk, item.hallucinated))
            if item.finished:
                sentence.frames = []
                sentence.done = True

    def _flush(self, job: Job) -> None:
        """Send what may leave: the current sentence's chunks, then the next sentence's once it is done."""
        while job.next_out < len(job.sentences):
            sentence = job.sentences[job.next_out]
            for output in sentence.chunks:
                job.samples += len(output.chunk.audio)
                job._put(output)
            sentence.chunks = []
            if not sentence.done:
                return
            job.next_out += 1
        job.finished = True
        job._put(None)

    def _drop(self, job: Job) -> None:
        """Remove a cancelled request's sentences from the generator and the feed."""
        for sentence in job.sentences:
            if sentence.key is not None and id(sentence.key) in self._live:
                self._generator.cancel(sentence.key)
                del self._live[id(sentence.key)]
        if job in self._feed:
            self._feed.remove(job)
        self._end(job, None)

    def _end(self, job, outcome: BaseException | None) -> None:
        """Close a request's stream (None: cleanly), leaving the waiting count right if it never started."""
        if not job.started:
            job.started = True
            with self._cond:
                self._waiting -= 1
        job.finished = True
        job._put(outcome)

    def _fail_all(self, error: BaseException) -> None:
        """Fail every request in the worker's hands and start over with a fresh generator."""
        jobs = {id(job): job for job, _ in self._live.values()}
        jobs.update((id(job), job) for job in self._feed)
        with self._cond:
            jobs.update((id(job), job) for job in self._inbox)
            self._inbox = []
        for job in jobs.values():
            self._end(job, error)
        self._live.clear()
        self._feed.clear()
        self._generator = self.engine.new_generator()
        self._report()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests and shutdown: True once nothing is queued or generating."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._generator.idle and not self._feed and not self._inbox:
                return True
            time.sleep(0.01)
        return False
