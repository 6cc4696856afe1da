"""The decode step's loop over the transformer blocks, in its forms.

- `cpu_decode_layers`, the CPU's step (float32 activations; int8 or float32 weights):
  few tensor operations, each norm's factor applied after the matmul it commutes with, the
  rotation as one matmul, attention as two batched matmuls. TorchScript compiles it where it
  can; elsewhere the very same function runs as Python.
- `kernel_decode_layers`, the same step where the int8 layers run on soprano's own kernel
  (`int8_kernel`): each int8 layer with its norm or residual in one call, each block's
  attention in one call.
- `static_decode_layers`, the GPU's step (and every other device, dtype or layer): few, fused
  kernels (`F.rms_norm`, fused attention over a masked span) and no host synchronization, so
  CUDA graphs can capture it; each layer is called as a module.

`Qwen3LM.decode` prepares the inputs (embeddings, rotations, cache views) and picks one.

On a CPU one decode step is about a thousand small tensor operations around 69 matmuls. Called
from Python each costs a few microseconds more than its arithmetic, and more again because the
weights streaming through the caches between them evict the interpreter's own code and data.
TorchScript's interpreter dispatches the same operations from compact C++: the same results bit
for bit (tested), in about half the time (the README reports benchmarks/bench_step.py's figures).

TorchScript is deprecated in PyTorch. Scripting happens once, at the first decode step; where it
fails (a PyTorch without it, or without fbgemm's packed-weight class), where the scripted loop
fails to run (`Qwen3LM` then keeps to Python), or SOPRANO_TORCHSCRIPT=0 turns it off,
the step runs as plain Python: the same function, so the same results bit for bit.
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

from soprano_cli.engine.ops import apply_rope, attend_one_position, float_added, float_normed, inverse_rms_with
from soprano_cli.engine.quantize import int8_added, int8_gated_added, int8_normed

log = logging.getLogger(__name__)


def cpu_decode_layers(x: Tensor, rotations: Tensor, mask: Optional[Tensor], write_rows: Optional[Tensor],
                      key_rows: List[Tensor], value_rows: List[Tensor], keys_t: List[Tensor], values: List[Tensor],
                      input_norms: List[Tensor], qk_norms: List[Tensor], post_norms: List[Tensor],
                      weights: List[Tensor], packed: List[torch.classes.quantized.LinearPackedParamsBase],
                      kernel_parts: List[Tensor], int8_blocks: List[bool], eps: Tensor, qk_eps: Tensor, heads: int,
                      kv_heads: int, head_dim: int, inner: int, input_scale: float) -> Tensor:
    """Every block of one decode step for float32 rows x (B, H); returns x after the last block.

    Each block's four linear layers (qkv, o, gate_up, down) are int8 where `int8_blocks[i]` (the
    next four of `packed`, fbgemm's, or of `kernel_parts`, soprano's kernel's, three tensors a
    layer; the other list is empty), else float32 and bias-free (the next four of `weights`): `auto`
    may keep the blocks that int8 would round audibly in float32. `write_rows` is None for one
    sentence, whose new key and value go to `key_rows[i]` / `value_rows[i]` (1, kvh, D) directly;
    for a batch, the rows of each layer's flat cache `key_rows[i]` (slots kvh L, D) to write.
    Attention reads `keys_t[i]` (B kvh, D, L) and `values[i]` (B kvh, L, D), masked by `mask`.
    """
    B = x.shape[0]
    group = heads // kv_heads
    q, f = 0, 0  # the next block's first int8 layer, first float32 layer (in `weights`)
    for i in range(len(input_norms)):
        qkv = _block_qkv(x, input_norms[i], weights, packed, kernel_parts, int8_blocks[i], q, f, eps, input_scale)
        # q and k heads side by side (B, h + kvh, D): one norm and one rotation for both.
        qkv = qkv.view(B, heads + 2 * kv_heads, head_dim)
        qk, v = qkv[:, :heads + kv_heads], qkv[:, heads + kv_heads:]
        qk = torch.bmm(qk * qk_norms[i], rotations).mul_(inverse_rms_with(qk, qk_eps))
        if write_rows is None:
            key_rows[i].copy_(qk[:, heads:])
            value_rows[i].copy_(v)
        else:
            key_rows[i].index_copy_(0, write_rows, qk[:, heads:].reshape(-1, head_dim))
            value_rows[i].index_copy_(0, write_rows, v.reshape(-1, head_dim))
        # The query heads that share a key head attend as that head's rows: no head expansion.
        queries = qk[:, :heads] if kv_heads == 1 else qk[:, :heads].reshape(B * kv_heads, group, head_dim)
        attended = attend_one_position(queries, keys_t[i], values[i], mask).reshape(B, heads * head_dim)
        x = _block_rest(x, attended, post_norms[i], weights, packed, kernel_parts, int8_blocks[i], q, f, eps, inner,
                        input_scale)
        if int8_blocks[i]:
            q += 4
        else:
            f += 4
    return x


def kernel_decode_layers(x: Tensor, cos_sin: Tensor, positions: Tensor, keys: Tensor, values: Tensor,
                         input_norms: List[Tensor], qk_norms: List[Tensor],
                         post_norms: List[Tensor], weights: List[Tensor],
                         packed: List[torch.classes.quantized.LinearPackedParamsBase], kernel_parts: List[Tensor],
                         int8_blocks: List[bool], eps: Tensor, qk_eps: Tensor, heads: int, kv_heads: int,
                         head_dim: int, inner: int, input_scale: float, slots: Optional[Tensor] = None,
                         keep: Optional[Tensor] = None) -> Tensor:
    """`cpu_decode_layers` where the int8 layers run on soprano's kernel (`int8_kernel`), whose
    library also does each block's attention in one call: the q and k norms, the rotation (row b's
    cos and signed sin, `cos_sin[b]`), the cache writes (into `keys` and `values`, the caches
    (layers, slots, kvh, L, D); row b in slot b, or `slots[b]`, at `positions[b]`) and the
    attention over the row's own positions. About twenty operations fewer per block.

    Prompts run through it too: each position a row, a prompt's rows sharing its slot. The kernel
    writes every row's keys before any row attends, so each position attends over the prompt up
    to itself, exactly as a decode step at that position would. Past the last block's attention
    only the rows `keep` (if given: each prompt's last position) go on, and only they are returned:
    the cache needs no other row's output."""
    q, f = 0, 0
    last = len(input_norms) - 1
    for i in range(len(input_norms)):
        qkv = _block_qkv(x, input_norms[i], weights, packed, kernel_parts, int8_blocks[i], q, f, eps, input_scale)
        attended = torch.ops.soprano.attend(qkv, qk_norms[i], qk_eps, cos_sin, keys, values, i, positions, heads,
                                            kv_heads, slots)
        if keep is not None and i == last:  # every row is computed alone: dropping some changes no other
            x, attended = x.index_select(0, keep), attended.index_select(0, keep)
        x = _block_rest(x, attended, post_norms[i], weights, packed, kernel_parts, int8_blocks[i], q, f, eps, inner,
                        input_scale)
        if int8_blocks[i]:
            q += 4
        else:
            f += 4
    return x


def _block_qkv(x: Tensor, input_norm: Tensor, weights: List[Tensor],
               packed: List[torch.classes.quantized.LinearPackedParamsBase], kernel_parts: List[Tensor], int8: bool,
               q: int, f: int, eps: Tensor, input_scale: float) -> Tensor:
    """A block's normed q, k and v projection, (B, (h + 2 kvh) D); its int8 layers start at `q`,
    its float32 ones at `f`."""
    if int8:
        return int8_normed(x, input_norm, packed, kernel_parts, q, eps, input_scale)
    return float_normed(x, input_norm, weights[f], eps)


def _block_rest(x: Tensor, attended: Tensor, post_norm: Tensor, weights: List[Tensor],
                packed: List[torch.classes.quantized.LinearPackedParamsBase], kernel_parts: List[Tensor], int8: bool,
                q: int, f: int, eps: Tensor, inner: int, input_scale: float) -> Tensor:
    """The rest of a block after attention: the output projection added, the normed gated MLP added."""
    if int8:
        x = int8_added(attended, x, packed, kernel_parts, q + 1, input_scale)
        gate_up = int8_normed(x, post_norm, packed, kernel_parts, q + 2, eps, input_scale)
    else:
        x = float_added(attended, x, weights[f + 1])
        gate_up = float_normed(x, post_norm, weights[f + 2], eps)
    if int8:
        return int8_gated_added(gate_up, x, packed, kernel_parts, q + 3, input_scale)
    activated = F.silu(gate_up[:, :inner]).mul_(gate_up[:, inner:])  # two slices: chunk costs four operations
    return float_added(activated, x, weights[f + 3])


def static_decode_layers(blocks, x: Tensor, cos: Tensor, sin: Tensor, mask: Optional[Tensor], write_rows: Tensor,
                         cache, keys: List[Tensor], values: List[Tensor]) -> Tensor:
    """Every block of one decode step through the layers' own modules; returns x after the last block.

    The same step as `cpu_decode_layers`, written for a GPU: the norms as `F.rms_norm`, the
    rotation elementwise (cos, sin (B, 1, D)), attention fused over `keys[i]`/`values[i]`
    (B, kvh, L, D) masked by `mask`, and any linear layer (bfloat16, int8) called as a module.
    `write_rows` are the rows of each layer's flat cache (slots kvh L, D) that get the new keys.
    """
    B = x.shape[0]
    first = blocks[0].self_attn
    heads, kv_heads, dim = first.num_heads, first.num_kv_heads, first.head_dim
    q_size, kv_size, group = heads * dim, kv_heads * dim, heads // kv_heads
    for layer, block in enumerate(blocks):
        attn, mlp = block.self_attn, block.mlp
        qkv = attn.qkv_proj(block.input_layernorm(x))  # (B, (h + 2 kvh) D)
        qk = qkv[:, :q_size + kv_size].view(B, heads + kv_heads, dim)
        qk = apply_rope(F.rms_norm(qk, (dim,), eps=attn.q_norm.eps).mul_(attn.qk_norm_weight()), cos, sin)
        v = qkv[:, q_size + kv_size:].view(B, kv_heads, dim)
        # A cache made for soprano's kernel holds float16 (`Qwen3LM.cache_dtype`); elsewhere the
        # conversions are no-ops.
        cache.k[layer].view(-1, dim).index_copy_(0, write_rows, qk[:, heads:].reshape(-1, dim).to(cache.k.dtype))
        cache.v[layer].view(-1, dim).index_copy_(0, write_rows, v.reshape(-1, dim).to(cache.v.dtype))
        out = F.scaled_dot_product_attention(qk[:, :heads].view(B, kv_heads, group, dim), keys[layer].to(qk.dtype),
                                             values[layer].to(qk.dtype), attn_mask=mask, scale=1.0)
        x = x + attn.o_proj(out.reshape(B, q_size))
        gate_up = mlp.gate_up_proj(block.post_attention_layernorm(x))
        inner = gate_up.shape[-1] // 2
        x = x + mlp.down_proj(F.silu(gate_up[:, :inner]).mul_(gate_up[:, inner:]))
    return x


@functools.cache
def scripted_decode_layers():
    """`cpu_decode_layers` compiled by TorchScript, or None where that fails or SOPRANO_TORCHSCRIPT=0
    (made once, on first use)."""
    return _scripted(cpu_decode_layers)


@functools.cache
def scripted_kernel_decode_layers():
    """`kernel_decode_layers` compiled by TorchScript, or None (as `scripted_decode_layers`)."""
    return _scripted(kernel_decode_layers)


def _scripted(function):
    if _turned_off():
        return None
    try:
        with warnings.catch_warnings():  # TorchScript's deprecation notice: Python is the fallback
            warnings.simplefilter("ignore")
            return torch.jit.script(function)
    except Exception as error:  # noqa: BLE001 - any failure means "run it as Python"
        log.debug("TorchScript decode loop unavailable (%s: %s); running it as Python", type(error).__name__, error)
        return None


def decode_loop_kind() -> str:
    """How CPU decode steps run here, for `soprano doctor`."""
    if _turned_off():
        return "eager (SOPRANO_TORCHSCRIPT=0)"
    return "TorchScript" if scripted_decode_layers() is not None else "eager (TorchScript unavailable)"


def _turned_off() -> bool:
    return os.environ.get("SOPRANO_TORCHSCRIPT", "").strip() == "0"
