"""Parity with the reference implementation (`soprano-tts`), computed live on checkpoints the tests make.

The reference runs greedy, on the CPU, in float32; so do these engines. Tokens must match exactly,
the decoder's frames and the audio to 1e-4 (the contract in README.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from checkpoints import FRAMES, GOLDEN_TEXTS, restyled
from reference_impl import ReferenceSoprano

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.random_checkpoint import CheckpointSizes, write_random_checkpoint
from soprano_cli.engine.sampling import SamplingParams

CASES = [0, 1, 2]


@pytest.fixture(scope="module", params=["torch", "transformers"])
def engine(request, tiny_checkpoint):
    return Engine.load(EngineConfig(model=str(tiny_checkpoint), backend=request.param, device="cpu", dtype="float32"))


@pytest.mark.parametrize("case", CASES)
def test_prompt_ids_match_reference(engine, golden, case):
    meta, arrays = golden
    assert engine.prompt_ids(meta["cases"][case]["text"]) == arrays[f"prompt_ids_{case}"].tolist()


def test_generation_matches_reference(engine, golden, golden_texts):
    _, arrays = golden
    sequences = engine.generate(golden_texts)
    for case, sequence in enumerate(sequences):
        assert sequence.finish_reason == "stop"
        assert sequence.tokens + [engine.eos_token_id] == arrays[f"gen_ids_{case}"].tolist()
        frames = np.stack([f.numpy() for f in sequence.frames])
        np.testing.assert_allclose(frames, arrays[f"hidden_{case}"], atol=1e-4, rtol=0)


def test_audio_matches_reference(engine, golden, golden_texts):
    meta, arrays = golden
    for case, result in enumerate(engine.synthesize(golden_texts)):
        expected = arrays[f"audio_{case}"]
        assert result.frames == meta["cases"][case]["frames"]
        assert result.audio.dtype == np.float32
        assert result.audio.shape == expected.shape == (meta["cases"][case]["samples"],)
        np.testing.assert_allclose(result.audio, expected, atol=1e-4, rtol=0)


def test_the_tiny_checkpoint_ends_its_sentences_after_text_dependent_lengths(golden):
    meta, _ = golden
    frames = [case["frames"] for case in meta["cases"]]
    assert all(case["finish_reason"] == "stop" for case in meta["cases"])
    assert len(set(frames)) == len(frames) and all(20 <= n < 400 for n in frames)
    assert frames == [FRAMES[text] for text in GOLDEN_TEXTS]  # the figures other tests rely on


def test_float32_is_pinned_explicitly(engine):
    # Parity is a float32 property: whatever `auto` becomes, these engines run float32 weights.
    assert engine.lm.config.hidden_size == 512
    weight = engine.lm.lm_head.weight if engine.backend == "torch" else engine.lm.model.lm_head.weight
    assert str(weight.dtype) == "torch.float32"


def _layout(name: str, tiny_checkpoint, folder):
    """The layouts a real model may come in (the tiny checkpoint itself is bfloat16, 5.x config)."""
    if name == "float32 weights, transformers 4.x config":
        return restyled(tiny_checkpoint, folder, dtype="float32", transformers_4x_config=True)
    if name == "float32 weights, transformers 5.x config":
        return restyled(tiny_checkpoint, folder, dtype="float32")
    return write_random_checkpoint(folder, CheckpointSizes.tiny(), seed=11, dtype="bfloat16", tie=True)


@pytest.mark.parametrize("layout", ["float32 weights, transformers 4.x config",
                                    "float32 weights, transformers 5.x config",
                                    "random, tied head, bfloat16"])
def test_every_checkpoint_layout_matches_the_reference_live(layout, tiny_checkpoint, tmp_path):
    folder = _layout(layout, tiny_checkpoint, tmp_path / "ckpt")
    # Random weights never emit EOS: both sides then run to the reference's 512-token cap.
    text = GOLDEN_TEXTS[1]
    expected = ReferenceSoprano(folder).run(text)
    engine = Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="float32"))
    assert engine.prompt_ids(text) == expected.prompt_ids
    sequence = engine.generate([text], SamplingParams())[0]
    assert sequence.finish_reason == expected.finish_reason
    assert sequence.tokens + ([engine.eos_token_id] if sequence.finish_reason == "stop" else []) == expected.gen_ids
    np.testing.assert_allclose(np.stack([f.numpy() for f in sequence.frames]), expected.hidden, atol=1e-4, rtol=0)
    result = engine.synthesize([text])[0]
    np.testing.assert_allclose(result.audio, expected.audio, atol=1e-4, rtol=0)
