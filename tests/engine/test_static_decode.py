"""The fixed-shape decode step (what CUDA graphs capture) computes what the engine's own step does."""

from __future__ import annotations

import pytest
import torch

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.sampling import SamplingParams


@pytest.mark.parametrize("lengths", [[7], [5, 9, 12]])
def test_static_step_equals_the_dynamic_one(tiny_engine, lengths):
    lm = tiny_engine.lm
    torch.manual_seed(0)
    caches = [lm.new_cache(len(lengths), 64) for _ in range(2)]
    keys, values = torch.randn_like(caches[0].k), torch.randn_like(caches[0].v)
    for cache in caches:
        cache.k.copy_(keys)
        cache.v.copy_(values)
    ids = torch.randint(0, lm.config.vocab_size, (len(lengths),))
    positions = torch.tensor(lengths)
    hidden, logits = lm.decode(ids, positions, caches[0])
    static_hidden, static_logits = lm.decode_static(ids, positions, caches[1])
    torch.testing.assert_close(static_hidden, hidden, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(static_logits, logits, rtol=1e-5, atol=1e-4)
    # Both wrote this step's keys and values at each slot's position, and nothing else.
    torch.testing.assert_close(caches[1].k, caches[0].k, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(caches[1].v, caches[0].v, rtol=1e-5, atol=1e-5)
    assert not torch.equal(caches[0].k, keys)


def test_generation_through_the_static_step_matches_the_reference(tiny_engine, golden, monkeypatch):
    """Sentences generated together, every step taken by `decode_static`: the reference's tokens."""
    meta, arrays = golden
    monkeypatch.setattr(tiny_engine.lm, "decode", tiny_engine.lm.decode_static)
    texts = [case["text"] for case in meta["cases"]]
    sequences = tiny_engine.generate(texts, SamplingParams(retries=0))
    for case, sequence in enumerate(sequences):
        assert sequence.tokens + [tiny_engine.eos_token_id] == arrays[f"gen_ids_{case}"].tolist()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the lent GPU machine)")


@needs_cuda
def test_cuda_graphs_generate_what_eager_cuda_does(tiny_checkpoint, golden):
    meta, arrays = golden
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cuda", dtype="float32"))
    assert engine.lm.cuda_graphs is not None
    texts = [case["text"] for case in meta["cases"]]
    with_graphs = engine.generate(texts, SamplingParams(retries=0))
    assert engine.lm.cuda_graphs.graphs and not engine.lm.cuda_graphs.failed
    engine.lm.cuda_graphs = None
    eager = engine.generate(texts, SamplingParams(retries=0))
    for case, (graphed, plain) in enumerate(zip(with_graphs, eager)):
        assert graphed.tokens == plain.tokens
        assert graphed.tokens + [engine.eos_token_id] == arrays[f"gen_ids_{case}"].tolist()
        torch.testing.assert_close(torch.stack(graphed.frames), torch.stack(plain.frames), rtol=1e-4, atol=1e-4)


@needs_cuda
def test_cuda_audio_matches_the_cpu_and_streams_losslessly(tiny_checkpoint, tiny_engine, golden_texts):
    """The GPU's batched decoder and its frame-by-frame streaming decoder both give the CPU's audio."""
    import numpy as np

    from soprano_cli.engine.measures import snr_db

    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cuda", dtype="float32"))
    params = SamplingParams(retries=0)
    on_gpu, on_cpu = engine.synthesize(golden_texts, params), tiny_engine.synthesize(golden_texts, params)
    chunks = list(engine.stream(golden_texts, params, chunk_frames=1))
    for i, (gpu, cpu) in enumerate(zip(on_gpu, on_cpu)):
        assert gpu.frames == cpu.frames
        assert snr_db(cpu.audio, gpu.audio) > 40
        streamed = np.concatenate([c.audio for c in chunks if c.sentence == i])
        assert snr_db(gpu.audio, streamed) > 60


@needs_cuda
def test_cuda_bfloat16_runs_the_decoder_in_bfloat16_within_quality(tiny_checkpoint, tiny_engine, golden):
    from soprano_cli.engine.measures import snr_db
    from soprano_cli.engine.precision_probe import MIN_DECODER_SNR_DB

    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cuda", dtype="bfloat16"))
    assert engine.dtype == "bfloat16" and engine.decoder_dtype == "bfloat16"
    frames = torch.from_numpy(golden[1]["hidden_0"])
    assert snr_db(tiny_engine.decode([frames])[0], engine.decode([frames])[0]) > MIN_DECODER_SNR_DB
