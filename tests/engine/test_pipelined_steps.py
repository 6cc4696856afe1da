"""Pipelined steps (a GPU queues step t+1 before handing out step t) change nothing but timing.

On the CPU every operation completes at once, so turning pipelining on here runs exactly the
scheduling a GPU runs (which step is queued when, what a join, a finish or a cancel does to the
step in flight) and checks its results against the plain loop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.generate import BatchGenerator, Generation
from soprano_cli.engine.sampling import SamplingParams


@pytest.fixture
def pipelined(monkeypatch):
    """Every generator made while this fixture is active pipelines; counts the steps it queued early."""
    queued = []
    original = BatchGenerator.step

    def step(self):
        self.pipelined = True
        events = original(self)
        queued.append(self._inflight is not None)
        return events

    monkeypatch.setattr(BatchGenerator, "step", step)
    return queued


def run(engine, texts, params):
    return [(s.tokens, torch.stack(s.frames) if s.frames else None, s.finish_reason)
            for s in engine.generate(texts, params)]


@pytest.mark.parametrize("max_batch", [1, 2, 16])
def test_pipelined_generation_is_the_reference(tiny_checkpoint, golden, golden_texts, max_batch, pipelined):
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32", max_batch=max_batch))
    sequences = engine.generate(golden_texts, SamplingParams(retries=0))
    for case, sequence in enumerate(sequences):
        assert sequence.tokens + [engine.eos_token_id] == golden[1][f"gen_ids_{case}"].tolist()
    assert sum(pipelined) > 0.8 * len(pipelined)  # most steps were queued ahead


def test_pipelined_frames_and_caps_equal_the_plain_loop(small_random_checkpoint, monkeypatch):
    engine = Engine.load(EngineConfig(model=str(small_random_checkpoint), device="cpu", dtype="float32", max_batch=2))
    texts = ["one.", "two two.", "three three three."]
    params = SamplingParams(max_new_tokens=12)
    plain = run(engine, texts, params)
    original = BatchGenerator.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.pipelined = True

    monkeypatch.setattr(BatchGenerator, "__init__", init)
    piped = run(engine, texts, params)
    for (tokens, frames, reason), (tokens2, frames2, reason2) in zip(plain, piped):
        assert tokens == tokens2 and reason == reason2 == "length" and len(tokens) == 12
        torch.testing.assert_close(frames2, frames, rtol=0, atol=0)


def test_a_cancel_while_a_step_is_in_flight(tiny_engine, golden_texts, pipelined):
    params = SamplingParams()
    alone = {i: tiny_engine.generate([text], params)[0].tokens for i, text in enumerate(golden_texts)}
    generator = tiny_engine.new_generator()
    for index, text in enumerate(golden_texts):
        generator.add(Generation(key=index, prompt=tiny_engine.prompt_ids(text), params=params, index=index))
    events = []
    for _ in range(3):
        events += generator.step()
    assert generator._inflight is not None
    generator.cancel(1)
    before_cancel = len(events)
    while not generator.idle:
        events += generator.step()
    finished = {e.sequence.key: e.sequence for e in events if e.finished}
    assert set(finished) == {0, 2}
    assert finished[0].tokens == alone[0] and finished[2].tokens == alone[2]
    assert not any(e.sequence.key == 1 and e.frame is not None for e in events[before_cancel:])


def test_sampling_rows_are_not_pipelined_and_stay_reproducible(tiny_engine, golden_texts, pipelined):
    params = SamplingParams(temperature=0.7, seed=5)
    first = [s.tokens for s in tiny_engine.generate(golden_texts, params)]
    assert not any(pipelined)
    assert first == [s.tokens for s in tiny_engine.generate(golden_texts, params)]


def test_pipelined_streaming_is_the_batch_audio(tiny_engine, golden_texts, pipelined):
    whole = tiny_engine.synthesize(golden_texts)
    chunks = list(tiny_engine.stream(golden_texts, chunk_frames=1))
    for i, result in enumerate(whole):
        streamed = np.concatenate([c.audio for c in chunks if c.sentence == i])
        np.testing.assert_allclose(streamed, result.audio, atol=1e-5, rtol=0)
    assert any(pipelined)
