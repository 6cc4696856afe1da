"""The hallucination guard: the reference's repeated-frame rule, the token cap, and retries."""

from __future__ import annotations

import logging

import torch

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.generate import REPEAT_LIMIT, RepetitionGuard
from soprano_cli.engine.sampling import SamplingParams


def observe_frames(guard: RepetitionGuard, frames) -> list[bool]:
    """Feed consecutive frames as the generator does: each one's distance from the one before."""
    return [guard.observe(float((frame - previous).abs().sum())) for previous, frame in zip(frames, frames[1:])]


def test_guard_flags_a_long_run_of_near_identical_frames():
    guard = RepetitionGuard()
    frames = [torch.zeros(512) + 0.1 * (i % 2) for i in range(REPEAT_LIMIT + 2)]  # 51.2 apart
    flags = observe_frames(guard, frames)
    assert not any(flags[:REPEAT_LIMIT])  # the counter must exceed the limit
    assert flags[-1]


def test_guard_counter_falls_on_distinct_frames():
    guard = RepetitionGuard()
    frames = []
    for _ in range(5):
        frames += [torch.zeros(512)] * 10  # similar: the counter rises by up to 10
        frames += [torch.full((512,), 10.0 * (k + 1)) for k in range(10)]  # each far from the last
    observe_frames(guard, frames)
    assert guard.count == 0 and not guard.flagged


def test_real_speech_frames_are_not_flagged(tiny_engine, golden_texts):
    assert not any(s.hallucinated for s in tiny_engine.generate(golden_texts))


def test_capped_sentences_are_retried_with_a_warning(small_random_checkpoint, caplog):
    engine = Engine.load(EngineConfig(model=str(small_random_checkpoint), device="cpu", dtype="float32"))
    params = SamplingParams(temperature=0.5, seed=1, max_new_tokens=8, retries=2)
    with caplog.at_level(logging.WARNING, logger="soprano_cli.engine.engine"):
        result = engine.synthesize(["hello there."], params)[0]
    retries = [r for r in caplog.records if "regenerating" in r.getMessage()]
    assert len(retries) == 2
    assert any("8-token cap" in r.getMessage() for r in caplog.records)
    assert result.frames == 8 and result.finish_reason == "length"


def test_no_retries_means_no_regeneration(small_random_checkpoint, caplog):
    engine = Engine.load(EngineConfig(model=str(small_random_checkpoint), device="cpu", dtype="float32"))
    with caplog.at_level(logging.WARNING, logger="soprano_cli.engine.engine"):
        engine.synthesize(["hello there."], SamplingParams(max_new_tokens=8))
    assert not [r for r in caplog.records if "regenerating" in r.getMessage()]
    assert [r for r in caplog.records if "cap" in r.getMessage()]
