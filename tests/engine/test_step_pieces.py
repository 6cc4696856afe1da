"""The CPU fast paths' pieces (LM decode step, decoder) against the plain formulas they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from soprano_cli.engine import quantize
from soprano_cli.engine.checkpoint import LMConfig
from soprano_cli.engine.lm import RMSNorm, rope_tables
from soprano_cli.engine.ops import (apply_rope, attend_one_position, constant, float_added, float_normed, inverse_rms,
                                    rope_matrices)
from soprano_cli.engine.decoder import depthwise_conv_rows, overlap_add
from soprano_cli.engine.sampling import penalize

needs_fbgemm = pytest.mark.skipif(not quantize.use_fbgemm(torch.device("cpu")), reason="needs fbgemm (an x86 CPU)")


def _norm(dim: int, generator: torch.Generator) -> RMSNorm:
    norm = RMSNorm(dim, 1e-6)
    norm.weight.data = torch.rand(dim, generator=generator) * 2
    return norm


def test_inverse_rms_is_the_rms_norm_factor():
    x = torch.randn(3, 5, 128) * torch.tensor([1e-3, 1.0, 30.0])[:, None, None]
    expected = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(inverse_rms(x, 1e-6), expected, rtol=2e-6, atol=0)
    # eps dominates a silent row, as in the norm
    torch.testing.assert_close(inverse_rms(torch.zeros(1, 8), 1e-6), torch.full((1, 1), 1e3))


def test_rope_matrices_rotate_as_the_elementwise_rope():
    config = LMConfig(vocab_size=8, hidden_size=64, intermediate_size=64, num_layers=1, num_heads=4,
                      num_kv_heads=1, head_dim=128, rms_norm_eps=1e-6, rope_theta=10000.0,
                      max_position_embeddings=1024, tie_word_embeddings=False, eos_token_id=0)
    cos, sin = rope_tables(config, 700, "cpu")
    positions = torch.tensor([0, 1, 57, 699])
    x = torch.randn(4, 5, 128)
    matrices = rope_matrices(torch.cat([cos, sin], dim=-1)[positions])
    rotated = torch.bmm(x, matrices)
    torch.testing.assert_close(rotated, apply_rope(x, cos[positions][:, None], sin[positions][:, None]),
                               rtol=1e-6, atol=1e-6)
    assert int((matrices[1:] != 0).sum()) == 3 * 2 * 128  # cos and sin in each column, nothing else


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_attention_of_one_position_equals_fused_attention(kv_heads):
    generator = torch.Generator().manual_seed(0)
    B, group, L, D = 3, 2, 40, 16
    queries = torch.randn(B, kv_heads, group, D, generator=generator) / D ** 0.5
    keys = torch.randn(B, kv_heads, 64, D, generator=generator)[:, :, :L]  # a slice of a longer cache
    values = torch.randn(B, kv_heads, 64, D, generator=generator)[:, :, :L]
    lengths = torch.tensor([39, 10, 25])
    mask = torch.zeros(B, 1, 1, L).masked_fill_(torch.arange(L)[None, None, None, :] > lengths[:, None, None, None],
                                                float("-inf"))
    def attend(q, k, v, m):
        return attend_one_position(q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2), v.flatten(0, 1), m).view(
            B, kv_heads, group, D)

    expected = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, scale=1.0)
    torch.testing.assert_close(attend(queries, keys, values, mask), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attend(queries, keys, values, None),
                               F.scaled_dot_product_attention(queries, keys, values, scale=1.0), rtol=1e-5, atol=1e-6)


def test_normed_float_linear_equals_linear_of_the_norm():
    generator = torch.Generator().manual_seed(1)
    norm, linear = _norm(64, generator), torch.nn.Linear(64, 96, bias=False)
    x = torch.randn(4, 64, generator=generator) * 5
    with torch.inference_mode():
        torch.testing.assert_close(float_normed(x, norm.weight, linear.weight, constant(norm.eps, x.device)),
                                   linear(norm(x)), rtol=1e-5, atol=1e-5)


@needs_fbgemm
def test_normed_int8_linear_equals_int8_linear_of_the_norm():
    generator = torch.Generator().manual_seed(2)
    norm = _norm(256, generator)
    layer = quantize.DynamicInt8Linear(torch.randn(384, 256, generator=generator) * 0.05)
    x = torch.randn(5, 256, generator=generator) * torch.tensor([0.01, 1, 3, 10, 100])[:, None]
    with torch.inference_mode():
        fused, plain = layer.normed(x, norm.weight, norm.eps), layer(norm(x))
    # The same int8 inputs (the scalings differ in order only), so all but float rounding agrees;
    # a wrong norm factor would be off by far more.
    scale = plain.abs().amax(dim=1, keepdim=True)
    assert ((fused - plain).abs() / scale).max() < 1e-5
    # Each row on its own: a row's result does not depend on the others.
    with torch.inference_mode():
        for row in range(5):
            torch.testing.assert_close(layer.normed(x[row:row + 1], norm.weight, norm.eps), fused[row:row + 1],
                                       rtol=0, atol=0)


def test_added_float_linear_equals_the_residual_plus_the_linear():
    generator = torch.Generator().manual_seed(3)
    linear = torch.nn.Linear(64, 96, bias=False)
    x, residual = torch.randn(4, 64, generator=generator), torch.randn(4, 96, generator=generator) * 3
    with torch.inference_mode():
        torch.testing.assert_close(float_added(x, residual, linear.weight), residual + linear(x), rtol=1e-6, atol=1e-6)


@needs_fbgemm
def test_added_int8_linear_equals_the_residual_plus_the_int8_linear():
    generator = torch.Generator().manual_seed(4)
    layer = quantize.DynamicInt8Linear(torch.randn(96, 256, generator=generator) * 0.05)
    x = torch.randn(5, 256, generator=generator) * torch.tensor([0.01, 1, 3, 10, 100])[:, None]
    x[2] = 0  # a silent row adds nothing
    residual = torch.randn(5, 96, generator=generator)
    with torch.inference_mode():
        added, plain = layer.added_to(x, residual), residual + layer(x)
        torch.testing.assert_close(added, plain, rtol=1e-6, atol=1e-6)
        assert torch.equal(added[2], residual[2])
        for row in range(5):  # a row's result does not depend on the others
            assert torch.equal(layer.added_to(x[row:row + 1], residual[row:row + 1]), added[row:row + 1])
        biased = quantize.DynamicInt8Linear(layer.weight.float() * 0.01, torch.randn(96, generator=generator))
        torch.testing.assert_close(biased.added_to(x, residual), residual + biased(x), rtol=1e-6, atol=1e-6)


@needs_fbgemm
def test_int8_layers_quantized_on_two_threads_keep_the_warning_filters_intact(monkeypatch):
    # catch_warnings is not thread-safe: overlapping blocks on the loader's two threads let
    # torch's deprecation warning through (seen once in CI) or left "ignore" behind for good.
    import time
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    make = torch._make_per_channel_quantized_tensor
    inside, most_inside = [], []

    def slow_make(*args):
        inside.append(1)
        most_inside.append(len(inside))
        time.sleep(0.02)  # a wide window for the other thread (sleep releases the GIL)
        inside.pop()
        return make(*args)

    monkeypatch.setattr(torch, "_make_per_channel_quantized_tensor", slow_make)
    filters_before = list(warnings.filters)
    weights = [torch.randn(32, 64) for _ in range(6)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        layers = list(pool.map(quantize.DynamicInt8Linear, weights))
    assert len(layers) == 6 and max(most_inside) == 1
    assert warnings.filters == filters_before


@pytest.mark.parametrize("n_fft, hop", [(2048, 512), (16, 4), (12, 5)])  # the last falls back to fold
def test_overlap_add_is_fold(n_fft, hop):
    steps = 7
    frames = torch.randn(2, n_fft, steps)
    fold = dict(output_size=(1, n_fft + hop * (steps - 1)), kernel_size=(1, n_fft), stride=(1, hop))
    expected = F.fold(frames, **fold)[:, 0, 0]
    torch.testing.assert_close(overlap_add(frames, hop, steps), expected, rtol=1e-6, atol=1e-6)
    # one frame broadcast to every step (the window's envelope)
    one = torch.rand(1, n_fft, 1)
    torch.testing.assert_close(overlap_add(one, hop, steps), F.fold(one.expand(1, n_fft, steps).contiguous(), **fold)[:, 0, 0],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("left, right", [(1, 1), (0, 1), (1, 0), (0, 0)])
def test_depthwise_conv_in_rows_is_conv1d(bias, left, right):
    conv = torch.nn.Conv1d(8, 8, kernel_size=3, groups=8, bias=bias)
    rows = torch.randn(10, 8)  # (steps, channels)
    with torch.no_grad():
        expected = F.conv1d(F.pad(rows.T[None], (left, right)), conv.weight, conv.bias, groups=8)[0].T
        torch.testing.assert_close(depthwise_conv_rows(rows, conv, left, right), expected, rtol=1e-5, atol=1e-6)
        # bfloat16 rounding around float32 arithmetic, as an autocast convolution
        rounded = depthwise_conv_rows(rows, conv, left, right, torch.bfloat16)
        assert rounded.dtype == torch.bfloat16
        torch.testing.assert_close(rounded.float(), expected, rtol=0.02, atol=0.02)


def reference_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """The reference implementation's repetition penalty, as a mask."""
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


@pytest.mark.parametrize("penalty", [1.2, 1.0001, 3.7, 10.0, 1.0, 0.999, 0.5, 0.1])
def test_penalize_is_the_reference_penalty_bit_for_bit(penalty):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4096, generator=generator) * 10
    logits[0, :6] = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-40, -1e-40])
    seen = torch.rand(3, 4096, generator=generator) < 0.3
    seen[0, :6] = True
    divisors = torch.where(seen, torch.tensor(penalty), torch.tensor(1.0))
    assert torch.equal(penalize(logits, divisors, penalty), reference_penalty(logits, seen, penalty))
