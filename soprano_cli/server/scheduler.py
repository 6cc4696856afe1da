"""Continuous batching across HTTP requests: every request's sentences share one LM batch.

The engine's `SentenceBatch` does the batching itself: admission, retries, decoding (whole
sentences, fixed chunks, or growing chunks batched across requests) and ordered delivery, as it
does for `Engine.stream`, so a request's audio is the same here as in-process. What this module
adds is serving: one worker thread owns the batch and steps it while there is work; requests hand
their sentences over with `submit()` and, as places free up, sentences of the waiting requests
are fed in round-robin (a long text does not starve a short one) unless their reader lags too far
behind; each request's chunks go back to its asyncio queue; cancelling a request drops its
sentences before the next step.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import torch

from soprano_cli.engine.engine import Engine
from soprano_cli.engine.results import WHOLE_SENTENCE, AudioChunk
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.engine.sentence_batch import Request, SentenceBatch
from soprano_cli.errors import SopranoError
from soprano_cli.server import limits

log = logging.getLogger(__name__)


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


class Job:
    """One request's sentences on their way through the batch; iterate `outputs()` for its chunks."""

    _ids = itertools.count(1)

    def __init__(self, sentences: list[str], params: SamplingParams, *, start_index: int, chunk_frames: int | None,
                 whole: bool, loop: asyncio.AbstractEventLoop, on_drained=None):
        self.id = next(self._ids)
        self.params = params
        self.texts = sentences
        self.start_index = start_index
        # whole: one chunk per sentence, retried if it loops; chunk_frames None: start small and grow.
        self.request = Request(params, WHOLE_SENTENCE if whole else chunk_frames, label=f"request {self.id}, ",
                               warn_at_own_cap=False)
        self.next_feed = 0  # next sentence to hand to the batch
        self.started = False  # a sentence of it has entered the batch
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
    """Owns the sentence batch and its worker thread."""

    def __init__(self, engine: Engine, *, max_queue: int = limits.MAX_QUEUE,
                 max_backlog_seconds: float = limits.MAX_BACKLOG_SECONDS, metrics=None):
        self.engine = engine
        self.max_queue = max_queue  # requests allowed to wait for a place in the batch
        # A request whose reader lags this much audio behind gets no new sentences into the batch
        # until it catches up: a slow reader costs bounded memory, a real-time player still plays.
        self.max_backlog = int(max_backlog_seconds * engine.sample_rate)
        self.metrics = metrics
        self._batch = SentenceBatch(engine)
        self._cond = threading.Condition()
        self._inbox: list[Job] = []  # submitted, not yet seen by the worker
        self._cancels: list[Job] = []
        self._waiting = 0  # submitted jobs with no sentence in the batch yet
        self._stopping = False
        self._feed: deque[Job] = deque()  # jobs with sentences left to feed (worker only)
        self._started: dict[int, Job] = {}  # jobs with sentences in the batch, by id(job.request) (worker only)
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
                while not (self._inbox or self._cancels or self._feedable() or self._stopping) and self._batch.idle:
                    self._cond.wait()
                inbox, self._inbox = self._inbox, []
                cancels, self._cancels = self._cancels, []
                if self._stopping and self._batch.idle and not self._feed and not inbox:
                    break
            for job in cancels:
                self._drop(job)
            self._feed.extend(job for job in inbox if not job.cancelled)
            self._fill()
            stepped, frames = not self._batch.idle, self._batch.frames
            try:
                for request in self._batch.step():
                    self._send(self._started[id(request)])
            except Exception as error:  # a failing step must not kill the thread: fail its requests instead
                log.exception("generation failed")
                self._fail_all(error)
                stepped = False
            self._report(steps=int(stepped), frames=self._batch.frames - frames if stepped else 0)
        self._fail_all(QueueFullError("the server is shutting down"))

    def _report(self, steps: int = 0, frames: int = 0) -> None:
        if self.metrics is not None:
            jobs = {id(job): job for job in self._started.values()}  # a job may also be in the feed: once
            jobs.update((id(job), job) for job in self._feed)
            buffered = sum(job.backlog for job in jobs.values()) / self.engine.sample_rate
            self.metrics.scheduler_state(queue_depth=self._waiting, active=self._batch.active,
                                         buffered_seconds=buffered,
                                         steps=steps, frames=frames)

    def _feedable(self) -> bool:
        """Whether some request in the feed may send a sentence now (its reader is not too far behind)."""
        throttled = [job.backlog > self.max_backlog for job in self._feed]
        self._throttled = any(throttled)
        return not all(throttled)

    def _fill(self) -> None:
        """Feed sentences round-robin across requests while the batch has room."""
        passed = 0  # throttled jobs rotated past in a row: all of them means nothing to feed
        while self._feed and passed < len(self._feed) and self._batch.room > 0:
            job = self._feed.popleft()
            if job.cancelled:
                continue
            if job.backlog > self.max_backlog:
                self._feed.append(job)
                passed += 1
                continue
            passed = 0
            self._batch.add(job.request, job.texts[job.next_feed], job.start_index + job.next_feed)
            job.next_feed += 1
            if not job.started:
                job.started = True
                self._started[id(job.request)] = job
                with self._cond:
                    self._waiting -= 1
            if job.next_feed < len(job.texts):
                self._feed.append(job)

    def _send(self, job: Job) -> None:
        """Hand the request what the batch released; end its stream once every sentence is out."""
        for chunk in job.request.take():
            job.samples += len(chunk.audio)
            job._put(Output(chunk, chunk.hallucinated))
        if job.next_feed == len(job.texts) and job.request.idle:
            del self._started[id(job.request)]
            job.finished = True
            job._put(None)

    def _drop(self, job: Job) -> None:
        """Remove a cancelled request's sentences from the batch and the feed."""
        self._batch.cancel(job.request)
        self._started.pop(id(job.request), None)
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
        """Fail every request in the worker's hands and start over with a fresh batch."""
        jobs = {id(job): job for job in self._started.values()}
        jobs.update((id(job), job) for job in self._feed)
        with self._cond:
            jobs.update((id(job), job) for job in self._inbox)
            self._inbox = []
        for job in jobs.values():
            self._end(job, error)
        self._started.clear()
        self._feed.clear()
        self._batch = SentenceBatch(self.engine)
        self._report()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests and shutdown: True once nothing is queued or generating."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._batch.idle and not self._feed and not self._inbox:
                return True
            time.sleep(0.01)
        return False
