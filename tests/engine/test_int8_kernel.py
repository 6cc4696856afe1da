"""soprano's own int8 kernel (engine/int8_kernel.py): its reference's bits (fbgemm's with VNNI, the
exact integer product with AVX2), the fused forms, the LM on it, and every way it falls back to fbgemm."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from system_deps import needs

from soprano_cli.engine import checkpoint, int8_kernel, quantize
from soprano_cli.engine.cpu import cpu_has_flag
from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.measures import hidden_states, snr_db
from soprano_cli.engine.ops import constant, inverse_rms_with, row_max_of
from soprano_cli.engine.random_checkpoint import CheckpointSizes, write_random_checkpoint
from soprano_cli.engine.sampling import SamplingParams

BUILT_FOR = int8_kernel.instruction_set()
pytestmark = [needs("c++"), pytest.mark.skipif(BUILT_FOR is None or not quantize.use_fbgemm(torch.device("cpu")),
                                               reason="soprano's int8 kernel needs AVX512-VNNI or AVX2, and fbgemm")]
VNNI = BUILT_FOR is not None and BUILT_FOR.zero_point != 0  # products bit for bit fbgemm's
INPUT_SCALE = 1 / 127


@pytest.fixture(autouse=True)
def kernel_loaded():
    """Each test alone too: the ops exist once the kernel is loaded (the first `available()`)."""
    assert int8_kernel.available(), int8_kernel.status()


def _layer(out_features: int, in_features: int, seed: int = 0):
    """The kernel's packed weight, and the product it must give (rows in [-1, 1] -> (M, out))."""
    generator = torch.Generator().manual_seed(seed)
    integers, scales = quantize.quantize_weight(torch.randn(out_features, in_features, generator=generator) * 0.05)
    if VNNI:
        packed = quantize.fbgemm_pack(integers, scales)
        reference = lambda rows: quantize.fbgemm_rows(rows, INPUT_SCALE, packed)  # noqa: E731
    else:
        reference = lambda rows: int8_kernel.exact_rows_product(rows, integers, scales, INPUT_SCALE)  # noqa: E731
    return int8_kernel.pack(integers, scales, INPUT_SCALE), reference


def _rows(count: int, width: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = torch.rand(count, width, generator=generator) * 2 - 1
    # Values exactly between two 8-bit steps (where a different rounding shows), the ends, zeros.
    rows[0, : width // 2] = (torch.randint(-126, 127, (width // 2,), generator=generator) + 0.5) / 127
    rows[-1, :4] = torch.tensor([1.0, -1.0, 0.0, -0.0])
    return rows


def test_the_kernel_is_built_for_this_cpu_and_used_here():
    assert int8_kernel.available(), int8_kernel.status()
    assert int8_kernel.status().startswith(f"soprano {BUILT_FOR.name} (")
    assert BUILT_FOR.name == ("AVX512-VNNI" if cpu_has_flag("avx512_vnni") and cpu_has_flag("avx512bw") else "AVX2")


@pytest.mark.parametrize("out_features, in_features", [(64, 16), (768, 512), (100, 2304), (1000, 48), (8, 512)])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 9, 33])
def test_the_product_is_its_references_bit_for_bit(out_features, in_features, count):
    """fbgemm's bits with VNNI; with AVX2, the exact integer product of 8-bit inputs (fbgemm's
    AVX2 path takes 7 bits, so it is not the reference there)."""
    parts, reference = _layer(out_features, in_features)
    rows = _rows(count, in_features)
    ours = int8_kernel.rows_product(rows, parts, INPUT_SCALE)
    assert ours.shape == (count, out_features)
    assert torch.equal(ours, reference(rows))


@pytest.mark.skipif(VNNI, reason="AVX2's products (VNNI's are fbgemm's, above)")
def test_avx2_products_keep_eight_bits_where_fbgemm_keeps_seven():
    """The largest inputs times the largest weights of either sign: 16-bit pair sums of unsigned
    inputs would overflow here, which the sign trick avoids; and half the rounding error of fbgemm."""
    weight = torch.full((32, 64), 127.0)
    weight[::2] *= -1
    integers, scales = quantize.quantize_weight(weight)
    parts = int8_kernel.pack(integers, scales, INPUT_SCALE)
    rows = torch.ones(2, 64)
    rows[1] = -1
    expected = torch.tensor([[-127.0 * 64, 127.0 * 64], [127.0 * 64, -127.0 * 64]]).repeat(1, 16)
    torch.testing.assert_close(int8_kernel.rows_product(rows, parts, INPUT_SCALE), expected, rtol=1e-6, atol=0)
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(256, 512, generator=generator)
    x = torch.rand(8, 512, generator=generator) * 2 - 1
    exact = x @ weight.t()
    ours = quantize.DynamicInt8Linear(weight, own_kernel=True)
    fbgemm = quantize.DynamicInt8Linear(weight, own_kernel=False)
    assert ours.kernel_parts and fbgemm.packed is not None and fbgemm.input_scale == 1 / 63
    assert snr_db(exact, ours(x)) > snr_db(exact, fbgemm(x)) + 3


def _shifted_reference(x: torch.Tensor, integers: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Shifted rows' product in float64: each row quantized over [lo, hi] into 0..128, the integer
    sums, the shift taken back out with the weight's sums."""
    low = x.min(1, keepdim=True).values
    span = (x.max(1, keepdim=True).values - low).clamp(min=1e-12)
    steps = ((x - low) * (128 / span)).round().clamp(0, 128).double()
    sums = steps @ integers.double().t()
    return (sums * span.double() / 128 + low.double() * integers.double().sum(1)) * scales.double()


def test_shifted_rows_are_their_quantization_and_as_precise_as_symmetric_ones_on_gelu_outputs():
    """The decoder's second MLP layer takes GELU's outputs (at least -0.17) as shifted rows: with
    AVX2, each row quantized over its own range into 0..128 (unsigned bytes, a third fewer
    operations; 2 x 128 x 127 still fits 16 bits), which there loses nothing to symmetric 8 bits.
    VNNI ignores the flag."""
    generator = torch.Generator().manual_seed(11)
    weight = torch.randn(96, 256, generator=generator) * 0.05
    integers, scales = quantize.quantize_weight(weight)
    parts = int8_kernel.pack(integers, scales, INPUT_SCALE)
    x = torch.nn.functional.gelu(torch.randn(21, 256, generator=generator) * 1.5)
    x[3] = 0.25  # a constant row: its range is one point
    x[4, :] = 0.0
    x[4, 7] = -0.17  # the largest byte pairs: 128 x 127 x 2 must not saturate
    shifted = int8_kernel.linear_product(x, parts, None, INPUT_SCALE, shifted=True)
    symmetric = int8_kernel.linear_product(x, parts, None, INPUT_SCALE)
    if VNNI:
        assert torch.equal(shifted, symmetric)
    else:
        torch.testing.assert_close(shifted.double(), _shifted_reference(x, integers, scales), rtol=1e-5, atol=1e-6)
    on_int8_weights = x.double() @ (integers.double() * scales.double()[:, None]).t()
    assert snr_db(on_int8_weights, shifted) > snr_db(on_int8_weights, symmetric) - 0.5
    for count in (1, 2, 3, 5):  # each row alone as in the batch
        assert torch.equal(int8_kernel.linear_product(x[:count], parts, None, INPUT_SCALE, shifted=True),
                           shifted[:count])
    extreme = torch.ones(2, 256)
    extreme[:, 0] = 0.0  # every other byte 128 after the shift, where the weights are all 127
    top_integers, top_scales = quantize.quantize_weight(torch.full((32, 256), 127.0))
    top_parts = int8_kernel.pack(top_integers, top_scales, INPUT_SCALE)
    torch.testing.assert_close(int8_kernel.linear_product(extreme, top_parts, None, INPUT_SCALE, shifted=True),
                               torch.full((2, 32), 127.0 * 255), rtol=1e-6, atol=0)


def test_the_int8_decoders_mlp_takes_both_layers_rows_shifted():
    """The decoder's ConvNeXt MLP on the kernel: gelu(pwconv1 x) and residual + gamma pwconv2(...),
    both layers' rows shifted (with AVX2; VNNI ignores it)."""
    from soprano_cli.engine.decoder import ConvNeXtBlock, _mlp_added

    torch.manual_seed(12)
    block = ConvNeXtBlock(64, 192, 3).eval()
    with torch.no_grad():
        block.gamma.normal_()
    exact = lambda x, residual: residual + block.gamma * float2(torch.nn.functional.gelu(float1(x)))  # noqa: E731
    float1, float2 = block.pwconv1, block.pwconv2
    block.pwconv1 = quantize.DynamicInt8Linear(block.pwconv1.weight, block.pwconv1.bias, own_kernel=True)
    block.pwconv2 = quantize.DynamicInt8Linear(block.pwconv2.weight, block.pwconv2.bias, own_kernel=True)
    x, residual = torch.randn(20, 64), torch.randn(20, 64)
    first, second = block.pwconv1, block.pwconv2

    def composed(shifted: bool) -> torch.Tensor:
        hidden = int8_kernel.linear_product(x, first.kernel_parts, first.bias, first.input_scale, gelu=True,
                                            shifted=shifted)
        return int8_kernel.linear_product(hidden, second.kernel_parts, second.bias, second.input_scale,
                                          column_scales=block.gamma, residual=residual, shifted=shifted)

    ours = _mlp_added(block, x, residual)
    assert torch.equal(ours, composed(True))
    assert VNNI or not torch.equal(ours, composed(False))
    with torch.no_grad():
        assert snr_db(exact(x, residual), ours) > 30


def test_the_fused_forms_are_their_compositions():
    """Norm, row scaling, product, residual and the MLP's activation in one call: the same as the
    separate operations but for the rms's own sum order and silu (a few units in the last place)."""
    parts, _ = _layer(1000, 512)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(5, 512, generator=generator) * 3
    norm = torch.rand(512, generator=generator) + 0.5
    eps = constant(1e-6, torch.device("cpu"))
    weighted = x * norm
    row_max = row_max_of(weighted)
    composed = int8_kernel.rows_product(weighted / row_max, parts, INPUT_SCALE) * (inverse_rms_with(x, eps) * row_max)
    torch.testing.assert_close(int8_kernel.normed_product(x, norm, eps, parts, INPUT_SCALE), composed,
                               rtol=1e-6, atol=1e-6)
    residual = torch.randn(5, 1000, generator=generator)
    row_max = row_max_of(x)
    composed = residual + int8_kernel.rows_product(x / row_max, parts, INPUT_SCALE) * row_max
    torch.testing.assert_close(int8_kernel.added_product(x, residual, parts, INPUT_SCALE), composed,
                               rtol=1e-6, atol=1e-6)
    # A whole layer (the decoder's): row scaling, product, scaling back and bias, with the
    # separate operations' exact arithmetic; the bias optional.
    bias = torch.randn(1000, generator=generator)
    row_max = row_max_of(x)
    product = int8_kernel.rows_product(x / row_max, parts, INPUT_SCALE) * row_max
    assert torch.equal(int8_kernel.linear_product(x, parts, bias, INPUT_SCALE), product + bias)
    assert torch.equal(int8_kernel.linear_product(x, parts, None, INPUT_SCALE), product)
    # ... and the decoder's ConvNeXt around it: gelu(layer(x)) (its own erfc; torch's 1 + erf(x)
    # loses x * 2^-23 to cancellation in the negative tail, hence the absolute tolerance), and
    # residual + gamma * layer(x) (exact).
    layer = product + bias
    torch.testing.assert_close(int8_kernel.linear_product(x, parts, bias, INPUT_SCALE, gelu=True),
                               torch.nn.functional.gelu(layer), rtol=1e-6, atol=2e-6)
    torch.testing.assert_close(int8_kernel.linear_product(x, parts, bias, INPUT_SCALE, gelu=True),
                               torch.nn.functional.gelu(layer.double()).float(), rtol=4e-6, atol=1e-12)
    gamma = torch.rand(1000, generator=generator)
    assert torch.equal(int8_kernel.linear_product(x, parts, bias, INPUT_SCALE, column_scales=gamma, residual=residual),
                       residual + gamma * layer)
    # The MLP's activation fused in: its own silu, a unit or two in the last place from torch's (so an
    # 8-bit input on a rounding edge may go the other way: compared by SNR, not bit for bit).
    gate_up = torch.randn(5, 1024, generator=generator) * 4
    gate_up[0, :8] = torch.tensor([0.0, -0.0, 90.0, -90.0, 1e-30, -1e-30, 20.0, -20.0])
    activated = torch.nn.functional.silu(gate_up[:, :512]) * gate_up[:, 512:]
    composed = int8_kernel.added_product(activated, residual, parts, INPUT_SCALE)
    fused = int8_kernel.gated_added_product(gate_up, residual, parts, INPUT_SCALE)
    assert snr_db(composed - residual, fused - residual) > 50  # one input flipped: about 60 dB
    assert torch.isfinite(fused).all()


def test_each_row_is_the_same_alone_and_in_a_batch():
    parts, _ = _layer(700, 512)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(11, 512, generator=generator)
    norm, eps = torch.rand(512, generator=generator), constant(1e-6, torch.device("cpu"))
    residual = torch.randn(11, 700, generator=generator)
    together = int8_kernel.normed_product(x, norm, eps, parts, INPUT_SCALE)
    added = int8_kernel.added_product(x, residual, parts, INPUT_SCALE)
    for row in range(11):
        alone = int8_kernel.normed_product(x[row:row + 1], norm, eps, parts, INPUT_SCALE)
        assert torch.equal(alone, together[row:row + 1])
        alone = int8_kernel.added_product(x[row:row + 1], residual[row:row + 1], parts, INPUT_SCALE)
        assert torch.equal(alone, added[row:row + 1])


def _attention_inputs(rows: int, heads: int, kv_heads: int, d: int, max_len: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * d, generator=generator)
    qk_norm = torch.rand((heads + kv_heads) * d, generator=generator) + 0.5
    angles = torch.rand(rows, d, generator=generator) * 6.3
    cos_sin = torch.cat([angles.cos(), angles.sin() * torch.where(torch.arange(d) < d // 2, -1.0, 1.0)], dim=1)
    caches = [torch.randn(3, rows, kv_heads, max_len, d, generator=generator) for _ in range(2)]
    return qkv, qk_norm, cos_sin, caches


def _attention_composed(qkv, qk_norm, eps, cos_sin, keys, values, layer, positions, heads, kv_heads,
                        cache_dtype=torch.float32):
    """The step's attention in plain torch over float32 caches; the new rows rounded to `cache_dtype` first."""
    rows, d = qkv.shape[0], keys.shape[-1]
    heads_all = qkv.reshape(rows, heads + 2 * kv_heads, d)
    qk = heads_all[:, : heads + kv_heads]
    normed = qk * torch.rsqrt(qk.pow(2).mean(-1, keepdim=True) + eps) * qk_norm.reshape(heads + kv_heads, d)
    cos, sin = cos_sin[:, None, :d], cos_sin[:, None, d:]
    rotated = normed * cos + normed.roll(-(d // 2), dims=-1) * sin
    out = torch.empty(rows, heads, d)
    for b in range(rows):
        at = int(positions[b])
        keys[layer, b, :, at] = rotated[b, heads:].to(cache_dtype).float()
        values[layer, b, :, at] = heads_all[b, heads + kv_heads:].to(cache_dtype).float()
        for h in range(heads):
            g = h // (heads // kv_heads)
            weights = torch.softmax(keys[layer, b, g, : at + 1] @ rotated[b, h], dim=0)
            out[b, h] = weights @ values[layer, b, g, : at + 1]
    return out.reshape(rows, heads * d)


@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads, kv_heads, d", [(4, 1, 128), (2, 2, 32), (6, 1, 32), (8, 2, 96), (1, 1, 64)])
def test_the_attention_is_its_composition_and_each_row_is_the_same_alone(heads, kv_heads, d, cache_dtype):
    """One decode step's attention (q/k norms, rotation, cache writes, softmax over the row's own
    positions, shared key heads) against plain torch, at lengths 1, odd and long; and each row
    alone as in the batch, bit for bit. Over a float16 cache (where the kernel attends, int8 keeps
    one) the new key and value are rounded to nearest as torch rounds a prompt's, and the sums are
    float32 over the cache's exact values."""
    positions = torch.tensor([0, 6, 130, 37])
    qkv, qk_norm, cos_sin, (keys, values) = _attention_inputs(4, heads, kv_heads, d, 160, seed=heads + d)
    keys, values = keys.to(cache_dtype), values.to(cache_dtype)
    eps = constant(1e-6, torch.device("cpu"))
    expected = _attention_composed(qkv, qk_norm, eps, cos_sin, keys.float(), values.float(), 1, positions, heads,
                                   kv_heads, cache_dtype)
    ours_keys, ours_values = keys.clone(), values.clone()
    together = torch.ops.soprano.attend(qkv, qk_norm, eps, cos_sin, ours_keys, ours_values, 1, positions, heads,
                                        kv_heads)
    torch.testing.assert_close(together, expected, rtol=1e-5, atol=1e-5)
    # The new rows: the float32 ones a float32 cache gets, rounded as torch rounds them.
    float_keys, float_values = keys.float(), values.float()
    torch.ops.soprano.attend(qkv, qk_norm, eps, cos_sin, float_keys, float_values, 1, positions, heads, kv_heads)
    assert ours_keys.dtype == cache_dtype
    assert torch.equal(ours_keys, float_keys.to(cache_dtype)) and torch.equal(ours_values, float_values.to(cache_dtype))
    for b in range(4):
        alone_keys, alone_values = keys[:, b:b + 1].clone(), values[:, b:b + 1].clone()
        alone = torch.ops.soprano.attend(qkv[b:b + 1], qk_norm, eps, cos_sin[b:b + 1], alone_keys, alone_values, 1,
                                         positions[b:b + 1], heads, kv_heads)
        assert torch.equal(alone, together[b:b + 1])
        assert torch.equal(alone_keys, ours_keys[:, b:b + 1])


@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.float16])
def test_a_prompts_rows_attend_as_decode_steps_at_their_positions(cache_dtype):
    """Rows given slots: a prompt's positions share its slot, every row's key is written before any
    row attends, and each row equals a decode step at its position, bit for bit (two prompts in
    one call, in slots 2 and 0, each as its own steps)."""
    heads, kv_heads, d, lengths = 4, 1, 128, (9, 23)
    rows = sum(lengths)
    qkv, qk_norm, cos_sin, (keys, values) = _attention_inputs(rows, heads, kv_heads, d, 32, seed=3)
    keys, values = keys[:, :3].to(cache_dtype).contiguous(), values[:, :3].to(cache_dtype).contiguous()
    eps = constant(1e-6, torch.device("cpu"))
    positions = torch.cat([torch.arange(n) for n in lengths])
    slots = torch.tensor([2] * lengths[0] + [0] * lengths[1])
    ours_keys, ours_values = keys.clone(), values.clone()
    together = torch.ops.soprano.attend(qkv, qk_norm, eps, cos_sin, ours_keys, ours_values, 1, positions, heads,
                                        kv_heads, slots)
    step_keys, step_values = keys.clone(), values.clone()
    for b in range(rows):
        alone = torch.ops.soprano.attend(qkv[b:b + 1], qk_norm, eps, cos_sin[b:b + 1], step_keys, step_values, 1,
                                         positions[b:b + 1], heads, kv_heads, slots[b:b + 1])
        assert torch.equal(alone, together[b:b + 1]), b
    assert torch.equal(ours_keys, step_keys) and torch.equal(ours_values, step_values)
    assert torch.equal(ours_keys[:, 1], keys[:, 1])  # slot 1 untouched
    with pytest.raises(RuntimeError, match="slot 3 is outside"):
        torch.ops.soprano.attend(qkv[:1], qk_norm, eps, cos_sin[:1], ours_keys, ours_values, 1, positions[:1], heads,
                                 kv_heads, torch.tensor([3]))


def test_the_kv_cache_is_float16_where_the_kernel_attends_and_float32_elsewhere(tiny_checkpoint):
    """An int8 model on soprano's kernel keeps its keys and values in float16 (half the bytes a step
    streams); float32 keeps the reference's exact arithmetic, and so its float32 cache."""
    int8 = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="int8"))
    exact = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32"))
    assert int8.lm.new_cache(2, 8).k.dtype == torch.float16
    assert exact.lm.new_cache(2, 8).k.dtype == torch.float32
    audio = int8.synthesize(["Hello there, friend."])[0].audio
    assert audio.size and bool(torch.isfinite(torch.from_numpy(audio)).all())


def _prompt_hidden(lm, ids: torch.Tensor, cache) -> torch.Tensor:
    positions = torch.arange(ids.shape[0]).unsqueeze(0)
    with torch.inference_mode():
        return lm.run_prompts(ids.unsqueeze(0), positions, cache, torch.zeros(1, dtype=torch.long), None)[0]


def test_a_prompt_attends_over_the_float16_keys_and_values_its_cache_keeps(tiny_checkpoint):
    """The prompt's positions attend over the rounded keys and values, as every later step does: so
    the probe's teacher-forced pass (a prompt) judges the float16 cache that runs."""
    from soprano_cli.engine.lm import KVCache

    lm = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="int8")).lm
    ids = torch.arange(3, 40)
    rounded = _prompt_hidden(lm, ids, lm.new_cache(1, ids.shape[0]))
    exact = _prompt_hidden(lm, ids, KVCache(lm.config, 1, ids.shape[0], torch.float32, torch.device("cpu")))
    assert not torch.equal(rounded, exact)
    assert torch.nn.functional.cosine_similarity(rounded, exact, dim=-1).min() > 0.999


def test_a_prompt_is_its_decode_steps_bit_for_bit(tiny_checkpoint):
    """On the kernel, a prompt's positions are rows of the step (sharing the prompt's cache slot):
    a prompt of n + 1 tokens leaves the very keys and values that n tokens and one decode step
    leave, in every layer, and unequal prompts prefilled together leave what each leaves alone.
    (Attention computed another way rounds differently: over these prompts, some key then differs.)"""
    lm = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="int8")).lm
    for length in (40, 80, 150):
        ids = torch.randint(3, lm.config.vocab_size - 1, (length,), generator=torch.Generator().manual_seed(length))
        for n in range(length - 6, length):
            whole, stepped = lm.new_cache(1, 160), lm.new_cache(1, 160)
            with torch.inference_mode():
                prompt_hidden, _ = lm.prefill([ids[:n + 1]], [0], whole)
                lm.prefill([ids[:n]], [0], stepped)
                step_hidden, _ = lm.decode(ids[n:n + 1], torch.tensor([n]), stepped)
            assert torch.equal(whole.k[:, :, :, :n + 1], stepped.k[:, :, :, :n + 1]), (length, n)
            assert torch.equal(whole.v[:, :, :, :n + 1], stepped.v[:, :, :, :n + 1]), (length, n)
            torch.testing.assert_close(prompt_hidden, step_hidden, rtol=1e-5, atol=1e-5)  # two final norms' roundings
    together = lm.new_cache(3, 160)
    with torch.inference_mode():
        lm.prefill([ids[:5], ids, ids[:20]], [2, 0, 1], together)
    for slot, count in ((2, 5), (0, length), (1, 20)):
        alone = lm.new_cache(1, 160)
        with torch.inference_mode():
            lm.prefill([ids[:count]], [0], alone)
        assert torch.equal(together.k[:, slot, :, :count], alone.k[:, 0, :, :count])
        assert torch.equal(together.v[:, slot, :, :count], alone.v[:, 0, :, :count])


@pytest.mark.parametrize("dtype", ["int8", "float32"])
def test_a_prefill_computes_only_the_last_rows_it_returns_and_they_are_the_whole_passes(tiny_checkpoint, dtype):
    """Prefill asks for each prompt's last row alone (on the kernel the others skip the last block's
    output projection and MLP): the very rows the whole pass gives, and the same keys and values."""
    lm = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype=dtype)).lm
    ids = torch.arange(3, 40).view(1, -1)
    positions = torch.arange(ids.shape[1]).view(1, -1)
    whole, lasts = lm.new_cache(1, 64), lm.new_cache(1, 64)
    with torch.inference_mode():
        every = lm.run_prompts(ids, positions, whole, torch.zeros(1, dtype=torch.long), None)
        last = lm.run_prompts(ids, positions, lasts, torch.zeros(1, dtype=torch.long), None, last=torch.tensor([20]))
    assert last.shape == (1, lm.config.hidden_size)
    assert torch.equal(last[0], every[0, 20])
    assert torch.equal(whole.k, lasts.k) and torch.equal(whole.v, lasts.v)


@pytest.mark.parametrize("out_features, in_features", [(64, 16), (768, 512), (512, 2304), (4608, 512)])
def test_float16_weights_sum_as_float32_and_each_row_alone_as_in_a_batch(out_features, in_features):
    """The blocks `auto` keeps out of int8: float16 weights (each rounded to nearest), float32
    sums in input order, the same for a row alone as in any batch."""
    generator = torch.Generator().manual_seed(6)
    weight = torch.randn(out_features, in_features, generator=generator) * 0.05
    weight[0, 0] = 3e-7  # a float16 subnormal, kept exactly
    x = torch.randn(9, in_features, generator=generator)
    packed = int8_kernel.pack_float(weight, torch.float16)
    together = int8_kernel.float_product(x, packed)
    exact = (x.double() @ weight.half().double().t()).float()
    torch.testing.assert_close(together, exact, rtol=1e-5, atol=1e-5 * in_features ** 0.5)
    for count in (1, 2, 3, 5):
        assert torch.equal(int8_kernel.float_product(x[:count], packed), together[:count])
    layer = quantize.PackedLinear(weight, dtype=torch.float16)
    assert torch.equal(layer.weight, weight.half().float())
    assert torch.equal(layer(x[None, :3]), together[None, :3])  # any leading dimensions


@pytest.mark.parametrize("out_features, in_features", [(2050, 768), (768, 512), (5, 64)])
def test_the_decoders_float32_layers_are_the_same_weights_summed_alone_per_row(out_features, in_features):
    """The int8 decoder's head and input projection on the kernel (`PackedLinear`): float32 weights
    (any number of output channels: the last block is padded), their product to float rounding,
    and each row alone the same as in any batch."""
    generator = torch.Generator().manual_seed(8)
    linear = torch.nn.Linear(in_features, out_features)
    with torch.no_grad():
        linear.bias.normal_(generator=generator)
    x = torch.randn(2, 13, in_features, generator=generator)
    layer = quantize.PackedLinear(linear.weight, linear.bias)
    assert torch.equal(layer.weight, linear.weight.detach())
    ours = layer(x)
    assert ours.shape == (2, 13, out_features) and ours.is_contiguous()
    exact = (x.double() @ linear.weight.double().t() + linear.bias.double()).float()
    torch.testing.assert_close(ours, exact, rtol=1e-5, atol=1e-5 * in_features ** 0.5)
    for count in (1, 2, 3, 5):
        assert torch.equal(layer(x[0, :count]), ours[0, :count])
    torch.testing.assert_close(quantize.PackedLinear(linear.weight, None)(x), exact - linear.bias.detach(), rtol=1e-5,
                               atol=1e-5 * in_features ** 0.5)


def test_a_block_kept_in_float16_only_where_every_weight_fits():
    from soprano_cli.engine.checkpoint import LMConfig
    from soprano_cli.engine.lm import Block

    config = LMConfig(hidden_size=64, num_layers=1, num_heads=2, num_kv_heads=1, head_dim=32, intermediate_size=128,
                      vocab_size=32, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=64,
                      tie_word_embeddings=False, eos_token_id=5)
    block = Block(config, 0).eval()
    assert quantize.keep_in_float16(block) and type(block.mlp.down_proj) is quantize.PackedLinear
    block = Block(config, 0).eval()
    with torch.no_grad():
        block.mlp.gate_up_proj.weight[3, 5] = 7e4  # beyond float16's 65504
    assert not quantize.keep_in_float16(block)
    assert all(type(layer) is torch.nn.Linear for layer in (block.self_attn.qkv_proj, block.mlp.down_proj))


def test_bad_inputs_are_refused_not_read_out_of_bounds():
    parts, _ = _layer(64, 512)
    with pytest.raises(RuntimeError, match="columns"):
        int8_kernel.rows_product(torch.zeros(1, 256), parts, INPUT_SCALE)
    with pytest.raises(RuntimeError, match="float32"):
        int8_kernel.rows_product(torch.zeros(1, 512, dtype=torch.float64), parts, INPUT_SCALE)
    with pytest.raises(RuntimeError, match="one per output channel"):
        int8_kernel.rows_product(torch.zeros(1, 512), [parts[0], parts[1][:10], parts[2]], INPUT_SCALE)


def test_the_unpacked_weight_is_the_quantized_weight():
    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(100, 64, generator=generator)
    layer = quantize.DynamicInt8Linear(weight, own_kernel=True)
    assert layer.kernel_parts and layer.packed is None
    assert torch.equal(layer.weight, quantize.quantize_weight(weight)[0])


def test_lm_and_decoder_run_on_the_kernel_and_sound_as_on_fbgemm(tiny_checkpoint, golden_texts, monkeypatch):
    """With VNNI, the same tokens as fbgemm's path and audio within float rounding of it. With AVX2,
    where fbgemm rounds inputs to 7 bits, the kernel's 8 bits stay closer to float32's frames."""
    texts = golden_texts[:3]
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="int8"))
    block = engine.lm.model.layers[0]
    head = getattr(engine.lm.lm_head, "layer", engine.lm.lm_head)  # the int8 part of a split head
    assert block.mlp.down_proj.kernel_parts and head.kernel_parts
    assert engine.decoder.decoder.convnext[0].pwconv1.kernel_parts  # the decoder's int8 layers too
    assert engine.lm.decode_loop() == "TorchScript"
    ours = engine.synthesize(texts)
    monkeypatch.setattr(int8_kernel, "available", lambda: False)
    fbgemm = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="int8"))
    assert fbgemm.lm.model.layers[0].mlp.down_proj.packed is not None
    if VNNI:
        theirs = fbgemm.synthesize(texts)
        for a, b in zip(ours, theirs):
            assert a.frames == b.frames
            assert snr_db(torch.from_numpy(b.audio), torch.from_numpy(a.audio)) > 40
        return
    exact = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32"))
    ids = torch.tensor(engine.tokenizer.encode(checkpoint.prompt_text(texts[0])).ids)
    want = hidden_states(exact.lm, ids)
    assert snr_db(want, hidden_states(engine.lm, ids)) > snr_db(want, hidden_states(fbgemm.lm, ids)) + 3


def test_a_head_size_the_kernels_attention_cannot_take_runs_on_the_modules(tmp_path, monkeypatch):
    """head_dim 48: the kernel's rotation works on whole 16-float halves, so this model's int8
    step runs its layers as modules (products still on the kernel), as fbgemm's path does."""
    sizes = CheckpointSizes(num_layers=2, head_dim=48, intermediate_size=256, vocab_size=512, decoder_dim=128,
                            decoder_layers=2, decoder_intermediate=256)
    folder = write_random_checkpoint(tmp_path / "heads48", sizes, seed=3)
    params = SamplingParams(max_new_tokens=12)
    ours = Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="int8"))
    assert ours.lm.model.layers[0].mlp.down_proj.kernel_parts
    ours_sequence = ours.generate(["a head of forty-eight."], params)[0]
    monkeypatch.setattr(int8_kernel, "available", lambda: False)
    fbgemm = Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="int8"))
    theirs_sequence = fbgemm.generate(["a head of forty-eight."], params)[0]
    assert ours_sequence.tokens == theirs_sequence.tokens
    # Float rounding apart with VNNI; with AVX2, fbgemm's 7-bit inputs against the kernel's 8 (a
    # wrongly rotated head would be tens of dB below either).
    assert snr_db(torch.stack(theirs_sequence.frames), torch.stack(ours_sequence.frames)) > (60 if VNNI else 40)


def _status_in_a_new_process(tmp_path, **env) -> subprocess.CompletedProcess:
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr); "
            "from soprano_cli.engine import int8_kernel; print(int8_kernel.status())")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "SOPRANO_KERNEL_CACHE": str(tmp_path / "kernels"), **env})


def test_it_falls_back_to_fbgemm_when_turned_off_or_unbuildable(tmp_path):
    off = _status_in_a_new_process(tmp_path, SOPRANO_INT8_KERNEL="0")
    assert off.stdout.strip() == "fbgemm (SOPRANO_INT8_KERNEL=0)"
    no_compiler = _status_in_a_new_process(tmp_path, CXX=str(tmp_path / "no-such-compiler"))
    assert no_compiler.stdout.strip() == "fbgemm (no C++ compiler (install g++ to build it))", no_compiler.stderr
    broken = tmp_path / "broken-c++"
    broken.write_text("#!/bin/sh\necho 'int8_rows.cpp:1: error: this compiler is broken' >&2\nexit 1\n")
    broken.chmod(0o755)
    failed = _status_in_a_new_process(tmp_path, CXX=str(broken))
    assert failed.returncode == 0 and "Traceback" not in failed.stderr
    assert failed.stdout.strip() == "fbgemm (the build failed: int8_rows.cpp:1: error: this compiler is broken)"
    assert not list((tmp_path / "kernels").glob("*.so"))  # nothing half-built is kept


def test_a_build_is_kept_and_reused(tmp_path):
    first = _status_in_a_new_process(tmp_path)
    assert first.stdout.startswith(f"soprano {BUILT_FOR.name}") and "building soprano's int8 kernel" in first.stderr
    built = list((tmp_path / "kernels").glob("int8_rows-*.so"))
    assert len(built) == 1 and not list((tmp_path / "kernels").glob(".build-*"))
    stamp = built[0].stat().st_mtime_ns
    again = _status_in_a_new_process(tmp_path)
    assert again.stdout.startswith(f"soprano {BUILT_FOR.name}") and "building" not in again.stderr
    assert built[0].stat().st_mtime_ns == stamp


def test_doctor_names_the_int8_kernel(tmp_path):
    from soprano_cli.doctor import check_cpu

    detail = next(check.detail for check in check_cpu() if check.name == "cpu.features")
    assert f"int8 kernel: soprano {BUILT_FOR.name}" in detail
