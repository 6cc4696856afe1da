"""`--backend lmdeploy` on a GPU: TurboMind's greedy tokens and frames against our torch backend and
the reference, audio within the bfloat16 GPU path's tolerances, batching and live streaming.

Skips without CUDA or without lmdeploy (`pip install 'soprano-cli[lmdeploy]'`); CI has neither.
tools/device/lmdeploy_check.sh runs it on a lent GPU machine.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.measures import cosine_per_position, snr_db

MIN_COSINE = 0.999  # frames as close to the torch backend's as the README's GPU tolerance
from soprano_cli.engine.random_checkpoint import write_random_checkpoint
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.text import model_text

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the lent GPU machine)"),
    pytest.mark.skipif(importlib.util.find_spec("lmdeploy") is None, reason="needs lmdeploy (the lmdeploy extra)"),
]

# TurboMind computes in bfloat16; the torch backend's bfloat16 GPU path measured 37.5 dB against
# float32 on the published sizes (README, Performance). Audio from the same frames' neighbourhood
# should be within a few dB of that.
MIN_AUDIO_SNR_DB = 30.0


@pytest.fixture(scope="module")
def lmdeploy_engine(tiny_checkpoint) -> Engine:
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cuda", backend="lmdeploy"))
    assert engine.backend == "lmdeploy" and engine.dtype == "bfloat16"
    return engine


@pytest.fixture(scope="module")
def torch_engines(tiny_checkpoint) -> dict[str, Engine]:
    return {dtype: Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cuda", dtype=dtype))
            for dtype in ("float32", "bfloat16")}


def test_greedy_tokens_equal_the_reference_and_the_torch_backend(lmdeploy_engine, torch_engines, golden, golden_texts):
    _, arrays = golden
    params = SamplingParams(retries=0)
    ours = lmdeploy_engine.generate(golden_texts, params)
    for dtype, engine in torch_engines.items():
        theirs = engine.generate(golden_texts, params)
        for case, (a, b) in enumerate(zip(ours, theirs)):
            assert a.tokens == b.tokens, f"case {case}: lmdeploy and torch {dtype} differ"
    for case, sequence in enumerate(ours):
        assert sequence.tokens + [lmdeploy_engine.eos_token_id] == arrays[f"gen_ids_{case}"].tolist()
        assert sequence.finish_reason == "stop" and len(sequence.frames) == len(sequence.tokens)


def test_frames_are_the_reference_hidden_states_within_bfloat16(lmdeploy_engine, golden, golden_texts):
    _, arrays = golden
    for case, sequence in enumerate(lmdeploy_engine.generate(golden_texts, SamplingParams(retries=0))):
        reference = torch.from_numpy(arrays[f"hidden_{case}"])
        frames = torch.stack(sequence.frames).cpu()
        assert frames.shape == reference.shape
        assert float(cosine_per_position(reference, frames).min()) >= MIN_COSINE


def test_audio_is_within_the_bfloat16_gpu_paths_tolerance(lmdeploy_engine, golden, golden_texts):
    _, arrays = golden
    for case, result in enumerate(lmdeploy_engine.synthesize(golden_texts, SamplingParams(retries=0))):
        assert result.audio.shape == arrays[f"audio_{case}"].shape
        assert snr_db(arrays[f"audio_{case}"], result.audio) > MIN_AUDIO_SNR_DB


def test_batched_sentences_equal_each_alone(lmdeploy_engine, golden_texts):
    params = SamplingParams(retries=0)
    together = lmdeploy_engine.generate(golden_texts, params)
    for text, batched in zip(golden_texts, together):
        [alone] = lmdeploy_engine.generate([text], params)
        assert alone.tokens == batched.tokens
        torch.testing.assert_close(torch.stack(alone.frames), torch.stack(batched.frames), rtol=0, atol=2e-2)


def test_streaming_is_live_and_lossless(lmdeploy_engine, golden_texts):
    params = SamplingParams(retries=0)
    whole = lmdeploy_engine.synthesize(golden_texts, params)
    chunks = list(lmdeploy_engine.stream(golden_texts, params, chunk_frames=1))
    for i, result in enumerate(whole):
        mine = [c for c in chunks if c.sentence == i]
        assert len(mine) > 2, "frames arrived per sentence, not per step"
        assert snr_db(result.audio, np.concatenate([c.audio for c in mine])) > 60


def test_sampling_is_seeded_and_ends(lmdeploy_engine, golden_texts):
    params = SamplingParams(temperature=0.7, top_p=0.9, seed=5, retries=0)
    first = lmdeploy_engine.generate(golden_texts, params)
    second = lmdeploy_engine.generate(golden_texts, params)
    assert [s.tokens for s in first] == [s.tokens for s in second]
    assert all(s.finish_reason in ("stop", "length") and len(s.frames) == len(s.tokens) for s in first)


def test_the_published_sizes_generate_the_torch_backends_tokens(tmp_path_factory):
    """A random checkpoint with the published 80M sizes (17 layers, 1 KV head, head_dim 128, vocab
    8192): it never emits EOS, so each sentence runs to the cap, bfloat16 on both sides."""
    folder = write_random_checkpoint(tmp_path_factory.mktemp("published") / "ckpt", seed=1)
    texts = ["the quick brown fox jumps over the lazy dog.", "soprano reads this sentence aloud."]
    params = SamplingParams(max_new_tokens=64, retries=0)
    ours = Engine.load(EngineConfig(model=str(folder), device="cuda", backend="lmdeploy")).generate(texts, params)
    theirs = Engine.load(EngineConfig(model=str(folder), device="cuda", dtype="bfloat16")).generate(texts, params)
    for a, b in zip(ours, theirs):
        assert a.finish_reason == b.finish_reason == "length"
        same = next((i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y), len(a.tokens))
        assert same == len(a.tokens), f"tokens agree for {same} of {len(a.tokens)}"


def test_upstreams_lmdeploy_backend_returns_the_same_frames(lmdeploy_engine, tiny_checkpoint, golden_texts):
    """Upstream's `LMDeployModel` (text prompts through lmdeploy's pipeline) against ours (prompt ids)."""
    upstream = pytest.importorskip("soprano.backends.lmdeploy")
    model = upstream.LMDeployModel(device="cuda", model_path=str(tiny_checkpoint))
    text = golden_texts[0]
    [response] = model.infer([f"[STOP][TEXT]{model_text(text)}[START]"], top_p=1.0, temperature=0.0, repetition_penalty=1.2)
    [ours] = lmdeploy_engine.generate([text], SamplingParams(retries=0))
    theirs = response["hidden_state"].float().cpu()
    assert theirs.shape[0] == len(ours.frames)
    torch.testing.assert_close(theirs, torch.stack(ours.frames).cpu(), rtol=0, atol=2e-2)
