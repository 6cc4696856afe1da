"""Tensor operations the LM's layers, its decode steps and the int8 layers share.

A leaf: it imports nothing of ours, so the model (`lm.py`), the decode steps (`step.py`) and
the int8 layers (`quantize.py`) can all build on it. The ones the CPU decode step calls take
tensors, not modules, and TorchScript compiles them with it (`step.py`).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotary embedding over the last dimension; cos and sin_signed broadcast against x."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), sin_signed)


def rope_matrices(cos_sin: torch.Tensor) -> torch.Tensor:
    """Each row's rotation as a (B, D, D) matrix M, so that apply_rope(x[b]) == x[b] @ M[b]: one
    matmul where the elementwise form takes a multiply, a roll (itself three operations) and an
    addcmul. `cos_sin` (B, 2D) is each row's cos then signed sin (a row of `Qwen3LM.rope_rows`).

    The diagonal holds cos, row (j - D/2) mod D of column j holds sin, every other entry is 0:
    written with one scatter at fixed places.
    """
    rows, dim = cos_sin.shape[0], cos_sin.shape[1] // 2
    matrices = torch.zeros(rows, dim * dim, dtype=cos_sin.dtype, device=cos_sin.device)
    return matrices.scatter_(1, _rope_places(dim, cos_sin.device).expand(rows, -1), cos_sin).view(rows, dim, dim)


@functools.lru_cache(maxsize=8)
def _rope_places(dim: int, device: torch.device) -> torch.Tensor:
    """Flat places in a D x D matrix of the diagonal (cos) and then of the signed sin entries."""
    with torch.inference_mode(False):  # usable in and out of inference mode
        columns = torch.arange(dim, device=device)
        return torch.cat([columns * dim + columns, (columns - dim // 2) % dim * dim + columns])[None]


def inverse_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """1 / sqrt(mean(x^2) + eps) over the last dimension, kept: three operations where
    `x.pow(2).mean()` alone takes five on a CPU."""
    return inverse_rms_with(x, constant(eps, x.device))


def inverse_rms_with(x: Tensor, eps: Tensor) -> Tensor:
    """`inverse_rms` with eps as a float32 scalar tensor (what TorchScript's loop passes)."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)  # as Qwen3 accumulates
    return torch.addcmul(eps, norm, norm, value=1.0 / x.shape[-1]).rsqrt_()


@functools.lru_cache(maxsize=16)
def constant(value: float, device: torch.device) -> torch.Tensor:
    """A float32 scalar tensor, made once: making one per call would cost two operations."""
    with torch.inference_mode(False):  # usable in and out of inference mode
        return torch.tensor(value, dtype=torch.float32, device=device)


def row_max_of(rows: Tensor) -> Tensor:
    """Each row's largest magnitude (B, 1), kept above 0 so an all-zero row divides safely."""
    return rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12)


def float_linear(x: Tensor, weight: Tensor) -> Tensor:
    """`linear(x)` for a bias-free float layer: a float32 weight (out, in), or a float16 one packed
    for soprano's kernel (a float16 `quantize.PackedLinear`'s; its op is defined wherever that weight exists)."""
    if weight.dtype == torch.float16:
        return torch.ops.soprano.float_rows(x, weight)
    return F.linear(x, weight)


def float_normed(x: Tensor, norm_weight: Tensor, weight: Tensor, eps: Tensor) -> Tensor:
    """`linear(rms_norm(x) * norm_weight)` for a bias-free float layer: the norm's per-row factor
    commutes with the layer, so it is applied to the output, fewer CPU operations than the norm."""
    return float_linear(x * norm_weight, weight).mul_(inverse_rms_with(x, eps))


def float_added(x: Tensor, residual: Tensor, weight: Tensor) -> Tensor:
    """`residual + linear(x)` for a bias-free float layer, in one addmm (float32 weights)."""
    if weight.dtype == torch.float16:
        return float_linear(x, weight).add_(residual)
    return torch.addmm(residual, x, weight.t())


def attend_one_position(queries: Tensor, keys_t: Tensor, values: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Attention of each slot's one new position: queries (B kvh, group, D), already scaled,
    against keys_t (B kvh, D, L) and values (B kvh, L, D); mask (B, 1, 1, L) or None.

    Two batched matmuls and a softmax, for float32 on a CPU: with a single query per head,
    torch's fused attention costs more in set-up than it saves.
    """
    scores = torch.bmm(queries, keys_t)  # (B kvh, group, L)
    if mask is not None:
        rows, group, span = scores.shape[0], scores.shape[1], scores.shape[2]
        scores = scores.view(mask.shape[0], -1, group, span).add_(mask).view(rows, group, span)
    return torch.bmm(torch.softmax(scores, dim=-1), values)  # (B kvh, group, D)
