"""The CPU decode step's loop over the transformer blocks as one TorchScript function.

On a CPU one decode step is about a thousand small tensor operations around 69 matmuls. Called
from Python each costs a few microseconds more than its arithmetic, and more again because the
weights streaming through the caches between them evict the interpreter's own code and data.
TorchScript's interpreter dispatches the same operations from compact C++: the same results bit
for bit (tested), in about half the time (one int8 step at batch 1: 7.3 -> 4.0 ms, as the README
reports from benchmarks/bench_step.py).

TorchScript is deprecated in PyTorch. Scripting happens once, at the first decode step; where it
fails (a PyTorch without it, or without fbgemm's packed-weight class), where the scripted loop
fails to run (`Qwen3LM._decode_step` then keeps to the eager loop), or SOPRANO_TORCHSCRIPT=0
turns it off, the eager loop in `lm.py` runs instead, with the same operations.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from soprano_cli.engine.lm import inverse_rms_with
from soprano_cli.engine.quantize import row_max_of

log = logging.getLogger(__name__)


def decode_layers(x: Tensor, rotations: Tensor, mask: Optional[Tensor], write_rows: Optional[Tensor],
                  key_rows: List[Tensor], value_rows: List[Tensor], keys_t: List[Tensor], values: List[Tensor],
                  input_norms: List[Tensor], qk_norms: List[Tensor], post_norms: List[Tensor],
                  weights: List[Tensor], packed: List[torch.classes.quantized.LinearPackedParamsBase],
                  eps: Tensor, qk_eps: Tensor, heads: int, kv_heads: int, head_dim: int, inner: int,
                  input_scale: float) -> Tensor:
    """Every block of one decode step for float32 rows x (B, H), in the operations of the eager
    loop in `Qwen3LM._decode_step` (see there for why each is as it is).

    Per block, the four linear layers are `packed[4 i : 4 i + 4]` (fbgemm int8: qkv, o, gate_up,
    down) or else `weights[4 i : 4 i + 4]` (float32, bias-free). `write_rows` is None for one
    sentence, whose new key and value go to `key_rows[i]` / `value_rows[i]` (1, kvh, D) directly;
    for a batch, the rows of each layer's flat cache `key_rows[i]` (slots kvh L, D) to write.
    Attention reads `keys_t[i]` (B kvh, D, L) and `values[i]` (B kvh, L, D), masked by `mask`.
    """
    B, hidden = x.shape[0], x.shape[1]
    int8 = len(packed) > 0
    group = heads // kv_heads
    for i in range(len(input_norms)):
        if int8:
            qkv = _int8_normed(x, input_norms[i], packed[4 * i], eps, input_scale)
        else:
            qkv = _float_normed(x, input_norms[i], weights[4 * i], eps)
        qkv = qkv.view(B, heads + 2 * kv_heads, head_dim)
        qk, v = qkv[:, :heads + kv_heads], qkv[:, heads + kv_heads:]
        qk = torch.bmm(qk * qk_norms[i], rotations).mul_(inverse_rms_with(qk, qk_eps))
        if write_rows is None:
            key_rows[i].copy_(qk[:, heads:])
            value_rows[i].copy_(v)
        else:
            key_rows[i].index_copy_(0, write_rows, qk[:, heads:].reshape(-1, head_dim))
            value_rows[i].index_copy_(0, write_rows, v.reshape(-1, head_dim))
        queries = qk[:, :heads] if kv_heads == 1 else qk[:, :heads].reshape(B * kv_heads, group, head_dim)
        scores = torch.bmm(queries, keys_t[i])  # (B kvh, group, L)
        if mask is not None:
            span = scores.shape[2]
            scores = scores.view(mask.shape[0], -1, group, span).add_(mask).view(B * kv_heads, group, span)
        attended = torch.bmm(torch.softmax(scores, dim=-1), values[i]).reshape(B, heads * head_dim)
        if int8:
            x = _int8_added(attended, x, packed[4 * i + 1], input_scale)
            gate_up = _int8_normed(x, post_norms[i], packed[4 * i + 2], eps, input_scale)
        else:
            x = torch.addmm(x, attended, weights[4 * i + 1].t())
            gate_up = _float_normed(x, post_norms[i], weights[4 * i + 2], eps)
        activated = F.silu(gate_up[:, :inner]).mul_(gate_up[:, inner:])
        if int8:
            x = _int8_added(activated, x, packed[4 * i + 3], input_scale)
        else:
            x = torch.addmm(x, activated, weights[4 * i + 3].t())
    return x


def _int8_normed(x: Tensor, norm_weight: Tensor, packed: torch.classes.quantized.LinearPackedParamsBase,
                 eps: Tensor, input_scale: float) -> Tensor:
    """`DynamicInt8Linear.normed`."""
    weighted = x * norm_weight
    row_max = row_max_of(weighted)
    out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
        weighted.div_(row_max), input_scale, 128, packed)
    return out.mul_(inverse_rms_with(x, eps).mul_(row_max))


def _int8_added(x: Tensor, residual: Tensor, packed: torch.classes.quantized.LinearPackedParamsBase,
                input_scale: float) -> Tensor:
    """`DynamicInt8Linear.added_to`."""
    row_max = row_max_of(x)
    out = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(x / row_max, input_scale, 128, packed)
    return torch.addcmul(residual, out, row_max)


def _float_normed(x: Tensor, norm_weight: Tensor, weight: Tensor, eps: Tensor) -> Tensor:
    """`lm._normed_linear` for a bias-free float layer."""
    return F.linear(x * norm_weight, weight).mul_(inverse_rms_with(x, eps))


@functools.cache
def scripted_decode_layers():
    """`decode_layers` compiled by TorchScript, or None where that fails or SOPRANO_TORCHSCRIPT=0
    (made once, on first use)."""
    if _turned_off():
        return None
    try:
        with warnings.catch_warnings():  # TorchScript's deprecation notice: the eager loop is the fallback
            warnings.simplefilter("ignore")
            return torch.jit.script(decode_layers)
    except Exception as error:  # noqa: BLE001 - any failure means "use the eager loop"
        log.debug("TorchScript decode loop unavailable (%s: %s); using the eager loop", type(error).__name__, error)
        return None


def decode_loop_kind() -> str:
    """How CPU decode steps run here, for `soprano doctor`."""
    if _turned_off():
        return "eager (SOPRANO_TORCHSCRIPT=0)"
    return "TorchScript" if scripted_decode_layers() is not None else "eager (TorchScript unavailable)"


def _turned_off() -> bool:
    return os.environ.get("SOPRANO_TORCHSCRIPT", "").strip() == "0"
