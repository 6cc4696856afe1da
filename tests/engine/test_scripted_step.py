"""The CPU decode step compiled by TorchScript (step.py) against the same function run as Python."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from soprano_cli.engine import int8_kernel, quantize, step
from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.generate import Generation
from soprano_cli.engine.random_checkpoint import CheckpointSizes, write_random_checkpoint
from soprano_cli.engine.sampling import SamplingParams

needs_fbgemm = pytest.mark.skipif(not quantize.use_fbgemm(torch.device("cpu")), reason="needs fbgemm (an x86 CPU)")
TEXTS = ["hello there.", "a somewhat longer sentence to read aloud, with a comma.", "three words here."]


@pytest.fixture(scope="module")
def grouped_checkpoint(tmp_path_factory):
    """Two key heads for four query heads: the attention path that groups query heads."""
    sizes = dataclasses.replace(CheckpointSizes.tiny(), num_kv_heads=2)
    return write_random_checkpoint(tmp_path_factory.mktemp("grouped") / "ckpt", sizes, seed=5)


def _engine(checkpoint, dtype: str) -> Engine:
    return Engine.load(EngineConfig(model=str(checkpoint), device="cpu", dtype=dtype, max_batch=4))


def _running_batch(engine: Engine, texts: list[str], steps: int = 6):
    """A generator a few steps into `texts` (prompts of different lengths), and its next decode inputs."""
    generator = engine.new_generator()
    for index, text in enumerate(texts):
        generator.add(Generation(key=index, prompt=engine.prompt_ids(text), params=SamplingParams(max_new_tokens=64),
                                 index=index))
    for _ in range(steps):
        generator.step()
    ids = torch.tensor([s.tokens[-1] for s in generator.active])
    lengths = torch.tensor([s.length for s in generator.active])
    return generator, ids, lengths


def _both_ways(engine: Engine, generator, ids, lengths, monkeypatch):
    """(hidden, logits) of one decode step through the scripted loop, then through the eager one."""
    lm = engine.lm
    assert lm.decode_loop() == "TorchScript", "the scripted loop should serve this model"
    with torch.inference_mode():
        fast = lm.decode(ids, lengths, generator.cache)
        with monkeypatch.context() as patch:
            patch.setattr(step, "scripted_decode_layers", lambda: None)
            patch.setattr(step, "scripted_kernel_decode_layers", lambda: None)  # int8 on soprano's kernel
            assert lm.decode_loop() == "python"
            eager = lm.decode(ids, lengths, generator.cache)
    return fast, eager


def test_torchscript_serves_this_platform():
    """CI's PyTorch scripts the loop: the fast path is what the other tests here exercise."""
    assert step.scripted_decode_layers() is not None


@pytest.mark.parametrize("dtype", ["float32", pytest.param("int8", marks=needs_fbgemm)])
@pytest.mark.parametrize("count", [1, 3])  # one sentence (direct writes), a batch (indexed writes, a mask)
def test_scripted_step_equals_the_eager_step_bit_for_bit(tiny_checkpoint, dtype, count, monkeypatch):
    engine = _engine(tiny_checkpoint, dtype)
    generator, ids, lengths = _running_batch(engine, TEXTS[:count])
    assert count == 1 or len(set(lengths.tolist())) > 1  # so the batch is masked
    (hidden, logits), (eager_hidden, eager_logits) = _both_ways(engine, generator, ids, lengths, monkeypatch)
    assert torch.equal(hidden, eager_hidden) and torch.equal(logits, eager_logits)


@pytest.mark.parametrize("dtype", ["float32", pytest.param("int8", marks=needs_fbgemm)])
def test_scripted_step_groups_query_heads_as_the_eager_step(grouped_checkpoint, dtype, monkeypatch):
    engine = _engine(grouped_checkpoint, dtype)
    generator, ids, lengths = _running_batch(engine, TEXTS)
    (hidden, logits), (eager_hidden, eager_logits) = _both_ways(engine, generator, ids, lengths, monkeypatch)
    assert torch.equal(hidden, eager_hidden) and torch.equal(logits, eager_logits)


def test_scripted_step_writes_the_cache_as_the_eager_step(tiny_checkpoint, monkeypatch):
    engine = _engine(tiny_checkpoint, "float32")
    generator, ids, lengths = _running_batch(engine, TEXTS)
    before = generator.cache.k.clone(), generator.cache.v.clone()
    with torch.inference_mode():
        engine.lm.decode(ids, lengths, generator.cache)
        fast = generator.cache.k.clone(), generator.cache.v.clone()
        generator.cache.k.copy_(before[0])
        generator.cache.v.copy_(before[1])
        with monkeypatch.context() as patch:
            patch.setattr(step, "scripted_decode_layers", lambda: None)
            engine.lm.decode(ids, lengths, generator.cache)
    assert not torch.equal(fast[0], before[0])  # the step wrote its keys
    assert torch.equal(fast[0], generator.cache.k) and torch.equal(fast[1], generator.cache.v)


def test_without_torchscript_the_eager_loop_gives_the_same_audio(tiny_checkpoint, monkeypatch):
    engine = _engine(tiny_checkpoint, "float32")
    fast = engine.synthesize(TEXTS[:2], SamplingParams(max_new_tokens=40))

    def unavailable(*args, **kwargs):
        raise RuntimeError("TorchScript is gone")

    monkeypatch.setattr(torch.jit, "script", unavailable)
    step.scripted_decode_layers.cache_clear()
    try:
        assert engine.lm.decode_loop() == "python"  # not TorchScript
        eager = engine.synthesize(TEXTS[:2], SamplingParams(max_new_tokens=40))
    finally:
        step.scripted_decode_layers.cache_clear()  # later tests script it again
    for a, b in zip(fast, eager):
        assert a.frames == b.frames and (a.audio == b.audio).all()


def test_a_scripted_loop_that_fails_to_run_gives_way_to_the_eager_loop(tiny_checkpoint, monkeypatch, caplog):
    engine = _engine(tiny_checkpoint, "float32")
    expected = engine.synthesize(TEXTS[:1], SamplingParams(max_new_tokens=30))[0]

    def broken(*args):
        args[4][0].fill_(7.0)  # a partial write first: the Python run must overwrite it
        raise RuntimeError("unknown builtin op")

    monkeypatch.setattr(step, "scripted_decode_layers", lambda: broken)
    result = engine.synthesize(TEXTS[:1], SamplingParams(max_new_tokens=30))[0]
    assert result.frames == expected.frames and (result.audio == expected.audio).all()
    assert engine.lm.decode_loop() == "python"  # not TorchScript, from the failure on
    assert "TorchScript decode loop failed" in caplog.text


def test_soprano_torchscript_0_keeps_the_eager_loop(monkeypatch):
    monkeypatch.setenv("SOPRANO_TORCHSCRIPT", "0")
    step.scripted_decode_layers.cache_clear()
    try:
        assert step.scripted_decode_layers() is None
    finally:
        step.scripted_decode_layers.cache_clear()


@needs_fbgemm
def test_a_layer_neither_int8_nor_float32_runs_through_the_module_step(tiny_checkpoint):
    engine = _engine(tiny_checkpoint, "float32")
    block = engine.lm.model.layers[0]
    block.mlp.down_proj = quantize.Int8Linear.from_float(block.mlp.down_proj.weight)  # int8 weights, bf16 math
    assert engine.lm.decode_loop() == "modules"  # not TorchScript (nor the CPU step as Python)
    engine.synthesize(TEXTS[:1], SamplingParams(max_new_tokens=8))  # and still runs


def test_a_biased_layer_runs_through_the_module_step_and_computes_the_same(tiny_checkpoint):
    # A bias does not commute with the norm's factor the CPU step moves past each layer, so such a
    # layer takes the static step's body, which calls every layer as a module.
    engine = _engine(tiny_checkpoint, "float32")
    params = SamplingParams(max_new_tokens=24, retries=0)
    expected = engine.generate(TEXTS[:2], params)
    block = engine.lm.model.layers[1]
    biased = torch.nn.Linear(block.mlp.down_proj.in_features, block.mlp.down_proj.out_features)
    with torch.no_grad():
        biased.weight.copy_(block.mlp.down_proj.weight)
        biased.bias.zero_()
    block.mlp.down_proj = biased
    assert engine.lm.decode_loop() == "modules"
    for before, after in zip(expected, engine.generate(TEXTS[:2], params)):
        assert after.tokens == before.tokens
        torch.testing.assert_close(torch.stack(after.frames), torch.stack(before.frames), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def three_block_checkpoint(tmp_path_factory):
    sizes = dataclasses.replace(CheckpointSizes.tiny(), num_layers=3)
    return write_random_checkpoint(tmp_path_factory.mktemp("three") / "ckpt", sizes, seed=8)


@needs_fbgemm
@pytest.mark.parametrize("count", [1, 3])
def test_int8_blocks_beside_a_float32_block_step_in_the_cpu_loop(three_block_checkpoint, count, monkeypatch):
    """`auto` may keep some blocks of an int8 model in float32: the CPU step serves such a mix (scripted
    and eager alike), each block in its own precision, as the modules compute it."""
    from soprano_cli.engine import checkpoint, precision_probe

    engine = _engine(three_block_checkpoint, "float32")
    config = checkpoint.read_lm_config(three_block_checkpoint)
    engine.lm = precision_probe.build(three_block_checkpoint, config, torch.device("cpu"), "int8",
                                      float_blocks=frozenset({1}))
    kept = quantize.PackedLinear if int8_kernel.available() else torch.nn.Linear  # float16 on soprano's kernel
    kinds = [type(block.mlp.down_proj) for block in engine.lm.model.layers]
    assert kinds == [quantize.DynamicInt8Linear, kept, quantize.DynamicInt8Linear]
    generator, ids, lengths = _running_batch(engine, TEXTS[:count])
    (hidden, logits), (eager_hidden, eager_logits) = _both_ways(engine, generator, ids, lengths, monkeypatch)
    assert torch.equal(hidden, eager_hidden) and torch.equal(logits, eager_logits)
    with torch.inference_mode(), monkeypatch.context() as patch:
        patch.setattr(type(engine.lm), "_cpu_step_arguments", lambda self: None)
        assert engine.lm.decode_loop() == "modules"
        module_hidden, _ = engine.lm.decode(ids, lengths, generator.cache)
    torch.testing.assert_close(hidden, module_hidden, rtol=1e-4, atol=1e-4)


def test_the_next_step_uses_a_weight_replaced_after_a_step(tiny_checkpoint):
    """The step's arguments are kept between steps: a layer's weight replaced after a step reaches the next."""
    def zero_a_layer(engine):
        linear = engine.lm.model.layers[1].mlp.down_proj
        linear.weight = torch.nn.Parameter(torch.zeros_like(linear.weight), requires_grad=False)

    engine, fresh = _engine(tiny_checkpoint, "float32"), _engine(tiny_checkpoint, "float32")
    zero_a_layer(fresh)
    generator, ids, lengths = _running_batch(engine, TEXTS[:1])
    with torch.inference_mode():
        before, _ = engine.lm.decode(ids, lengths, generator.cache)
        zero_a_layer(engine)
        after, _ = engine.lm.decode(ids, lengths, generator.cache)
        expected, _ = fresh.lm.decode(ids, lengths, generator.cache)
    assert not torch.equal(before, after) and torch.equal(after, expected)
