"""A request whose reader lags gets no new sentences into the batch: bounded memory, nothing lost."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.server.metrics import Metrics
from soprano_cli.server.scheduler import Scheduler

SENTENCE = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    return Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32", max_batch=2))


def test_a_lagging_reader_pauses_its_request_until_it_reads(engine):
    metrics = Metrics()
    scheduler = Scheduler(engine, max_backlog_seconds=1.0, metrics=metrics)
    scheduler.start()

    async def main():
        job = scheduler.submit([SENTENCE] * 12, SamplingParams())
        # Nobody reads: the batch must go quiet with most of the text never fed.
        deadline = time.monotonic() + 60
        seen = None
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            state = (job.next_feed, metrics.frames, metrics.active_sequences)
            if state == seen and metrics.frames > 0 and metrics.active_sequences == 0:
                break  # nothing moved for a while: paused
            seen = state
        paused_at = job.next_feed
        buffered = metrics.buffered_seconds
        assert 0 < paused_at < 12
        sentence_seconds = 200 * 2048 / engine.sample_rate  # the longest a tiny-model sentence gets
        assert 1.0 < buffered <= 1.0 + 2 * sentence_seconds  # the limit, plus what was in the batch
        # Reading resumes it; every sentence arrives, in order.
        sentences = []
        async for output in job.outputs():
            if output.chunk.final:
                sentences.append(output.chunk.sentence)
        return sentences

    try:
        assert asyncio.run(main()) == list(range(12))
    finally:
        scheduler.stop()


def test_a_cap_the_client_set_is_not_warned_about_per_request(engine, caplog):
    """A client's max_new_tokens is its own choice: the server's log does not repeat it for every
    request. Engine callers still hear of it (the same handler catches that, so this can fail)."""
    driver_log = logging.getLogger("soprano_cli.engine.sentence_batch")
    driver_log.addHandler(caplog.handler)  # whatever an earlier test did to propagation
    scheduler = Scheduler(engine)
    scheduler.start()

    async def main():
        job = scheduler.submit([SENTENCE], SamplingParams(max_new_tokens=4))
        return [output async for output in job.outputs()]

    try:
        outputs = asyncio.run(main())
        assert outputs[-1].chunk.final and outputs[-1].chunk.finish_reason == "length"
        assert not [r for r in caplog.records if "cap" in r.getMessage()]
        engine.synthesize([SENTENCE], SamplingParams(max_new_tokens=4))
        assert [r for r in caplog.records if "4-token cap" in r.getMessage()]
    finally:
        driver_log.removeHandler(caplog.handler)
        scheduler.stop()
