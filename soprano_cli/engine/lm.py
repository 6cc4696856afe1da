"""The Qwen3 language model in plain PyTorch, with a slot-based preallocated KV cache.

Sequences live in cache slots 0..B-1 (kept contiguous so decode attends over a view, not a
copy); each slot has its own length, and a finished sequence's slot is refilled by moving the
last one into it.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from soprano_cli.engine import int8_kernel, step
from soprano_cli.engine.checkpoint import LMConfig
from soprano_cli.engine.ops import apply_rope, constant, inverse_rms, rope_matrices
from soprano_cli.engine.quantize import PackedLinear
from soprano_cli.engine.step import static_decode_layers

log = logging.getLogger(__name__)
# Where `kernel_parts` sits in the step arguments (`_gather_step_arguments`): non-empty, the int8
# layers run on soprano's kernel and the step takes its form (`step.kernel_decode_layers`).
KERNEL_PARTS = 5


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused kernel; it accumulates lower-precision activations in float32 as Qwen3 does,
        # and rounds once (after the weight) where Qwen3 rounds before it too.
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class KVCache(nn.Module):
    """Keys and values of every layer: (layers, slots, kv_heads, max_len, head_dim)."""

    def __init__(self, config: LMConfig, slots: int, max_len: int, dtype: torch.dtype, device):
        super().__init__()
        shape = (config.num_layers, slots, config.num_kv_heads, max_len, config.head_dim)
        # Zeros, not empty: masked positions are multiplied by 0 weights, and 0 * NaN would leak.
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    @property
    def slots(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def copy_slot_from(self, other: "KVCache", slot: int, length: int) -> None:
        """Take one slot's contents from a smaller cache (when the cache grows)."""
        self.k[:, slot, :, :length] = other.k[:, slot, :, :length]
        self.v[:, slot, :, :length] = other.v[:, slot, :, :length]

    def move(self, source: int, target: int, length: int) -> None:
        """Copy one slot's first `length` positions into another (compaction after a finish)."""
        self.k[:, target, :, :length] = self.k[:, source, :, :length]
        self.v[:, target, :, :length] = self.v[:, source, :, :length]


def rope_tables(config: LMConfig, max_len: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, and sin with the rotate-half signs folded in, for every position: (max_len, head_dim).

    rotate_half(x) * sin equals roll(x, D/2) * sin_signed, and a roll is one operation where
    rotate_half is four.
    """
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    positions = torch.arange(max_len, dtype=torch.float32)
    freqs = torch.outer(positions, inv_freq)  # (max_len, dim/2)
    emb = torch.cat([freqs, freqs], dim=-1)
    sin = emb.sin()
    sin[:, : dim // 2].neg_()
    return emb.cos().to(device), sin.to(device)


class Attention(nn.Module):
    def __init__(self, config: LMConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        hidden, dim = config.hidden_size, config.head_dim
        # q, k and v in one matmul: decoding is bound by reading weights, and one call reads them once.
        self.q_size, self.kv_size = self.num_heads * dim, self.num_kv_heads * dim
        self.qkv_proj = nn.Linear(hidden, self.q_size + 2 * self.kv_size, bias=False)
        self.o_proj = nn.Linear(self.num_heads * dim, hidden, bias=False)
        self.q_norm = RMSNorm(dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(dim, config.rms_norm_eps)

    def qk_norm_weight(self) -> torch.Tensor:
        """q_norm's weight for each query head, then k_norm's for each key head: (h + kvh, D).

        The query rows carry attention's 1/sqrt(D) too, so attention itself runs unscaled (one
        operation fewer per layer; rotation is linear, so where the factor goes is immaterial).
        """
        cached = getattr(self, "_qk_weight", None)
        if cached is None or cached.device != self.q_norm.weight.device or cached.dtype != self.q_norm.weight.dtype:
            cached = torch.cat([self.q_norm.weight.expand(self.num_heads, -1) * self.head_dim ** -0.5,
                                self.k_norm.weight.expand(self.num_kv_heads, -1)]).detach()
            self._qk_weight = cached
        return cached

    def forward(self, x, cos, sin, cache: KVCache, slots, mask, lengths=None):
        """Prompt positions (B, T, H) of the sequences in cache `slots` (B,): their keys and values
        go into the cache, and each position attends to the prompt up to itself. (A decode step
        is `step.py`'s; where soprano's kernel runs the step, it runs prompts too.)"""
        B, T, _ = x.shape
        heads = self.num_heads + self.num_kv_heads
        qk, v = self.qkv_proj(x).split([self.q_size + self.kv_size, self.kv_size], dim=-1)
        # q and k heads side by side: one norm and one rotation for both (decode is op-bound).
        qk = F.rms_norm(qk.view(B, T, heads, self.head_dim), (self.head_dim,), eps=self.q_norm.eps)
        qk = qk * self.qk_norm_weight()
        qk = apply_rope(qk, cos, sin).transpose(1, 2)  # (B, h + kvh, T, D)
        q, k = qk.split([self.num_heads, self.num_kv_heads], dim=1)
        v = v.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)

        # Each row into its slot (padding past a prompt's end is never read).
        cache.k[self.layer][slots, :, :T] = k.to(cache.k.dtype)
        cache.v[self.layer][slots, :, :T] = v.to(cache.v.dtype)
        if lengths is not None:  # prompts of unequal lengths: each attends as it would alone (see `prefill`)
            out = q.new_zeros(q.shape)  # (B, h, T, D); padded positions stay 0 and are never read
            for row, n in enumerate(lengths):
                out[row:row + 1, :, :n] = self._attend(q[row:row + 1, :, :n], k[row:row + 1, :, :n],
                                                       v[row:row + 1, :, :n], None)
        else:
            out = self._attend(q, k, v, mask)  # (B, h, T, D)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))

    def _attend(self, q, keys, values, mask):
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=(q.shape[2] > 1 and mask is None),
                                              scale=1.0, enable_gqa=self.num_kv_heads != self.num_heads)


class MLP(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: LMConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, cache, slots, mask, lengths=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, slots, mask, lengths)
        return x + self.mlp(self.post_attention_layernorm(x))


class Qwen3Backbone(nn.Module):
    """The transformer, `model.*` in the checkpoint: embeddings, blocks and the final norm (the
    head that turns hidden states into logits is `Qwen3LM.lm_head`)."""

    def __init__(self, config: LMConfig):
        super().__init__()
        # An explicit weight skips nn.Embedding's normal_() init, which on the meta device imports
        # torch._dynamo (about a second of start-up) for values that are overwritten anyway.
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size,
                                         _weight=torch.empty(config.vocab_size, config.hidden_size))
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


def _half_packed(linear: nn.Module) -> bool:
    """A bias-free float16 `PackedLinear`: a float block's layer the step runs on soprano's kernel."""
    return (isinstance(linear, PackedLinear) and linear.bias is None and linear.packed_weight.dtype == torch.float16
            and linear.packed_weight.shape[0] * linear.packed_weight.shape[2] == linear.out_features)


class Qwen3LM(nn.Module):
    """Prefill one prompt into a slot, or decode one token for every active slot."""

    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        self.model = Qwen3Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None
        self._rope_rows: torch.Tensor | None = None
        self._scripted_failed = False  # the TorchScript loop raised once: the same loop as Python from then on
        self._step_arguments: tuple | None = None  # (parts, place, arguments): see _cpu_step_arguments
        self.cuda_graphs = None  # a CudaGraphRunner on CUDA: decode replays captured graphs

    def new_cache(self, slots: int, max_len: int) -> KVCache:
        weight = self.model.embed_tokens.weight  # lm_head may be int8
        return KVCache(self.config, slots, max_len, self.cache_dtype(), weight.device)

    def cache_dtype(self) -> torch.dtype:
        """What the KV cache holds: the activations' dtype, or float16 where soprano's kernel attends:
        a step then streams half the bytes of every sentence's keys and values (its arithmetic stays
        float32, and a prompt's keys are rounded as the step's own are)."""
        return torch.float16 if self._kernel_arguments() is not None else self.model.embed_tokens.weight.dtype

    def _kernel_arguments(self) -> tuple | None:
        """The step's arguments where its int8 layers run on soprano's kernel (a CPU, float32
        activations), else None."""
        weight = self.model.embed_tokens.weight
        if weight.dtype != torch.float32 or weight.device.type != "cpu":
            return None
        arguments = self._cpu_step_arguments()
        return arguments if arguments is not None and arguments[KERNEL_PARTS] else None

    def tie_weights(self) -> None:
        self.lm_head.weight = self.model.embed_tokens.weight

    def rope(self, length: int):
        if self._rope is None or self._rope[0].shape[0] < length:
            self._rope = rope_tables(self.config, max(length, 1024), self.model.embed_tokens.weight.device)
            self._rope_rows = None
        return self._rope

    def rope_rows(self, length: int) -> torch.Tensor:
        """cos and signed sin side by side for every position, (max_len, 2D), in the activations'
        dtype: one row per step where two tables take two lookups and a conversion."""
        cos, sin = self.rope(length)
        dtype = self.model.embed_tokens.weight.dtype
        if self._rope_rows is None or self._rope_rows.dtype != dtype:
            self._rope_rows = torch.cat([cos, sin], dim=-1).to(dtype)
        return self._rope_rows

    def run_prompts(self, ids, positions, cache: KVCache, slots, mask, rope_len: int | None = None, lengths=None,
                    last=None):
        """Final-normed hidden states (B, T, H) of prompts `ids` (B, T) at `positions`, their keys
        and values written into cache `slots` (B,); `mask`, `lengths` as `Attention.forward` takes them.
        With `last` (B,), only each prompt's row at that position, (B, H): on soprano's kernel the
        other rows then skip the last block's output projection and MLP."""
        rope_len = rope_len or int(positions.max()) + 1
        x = self.model.embed_tokens(ids)
        arguments = self._kernel_arguments()
        B, T, H = x.shape
        if arguments is not None:  # every prompt position a row of the kernel's step, in its prompt's slot
            rows_slots = slots[:, None].expand(B, T).reshape(-1)
            cos_sin = self.rope_rows(rope_len)[positions.reshape(-1)]
            keep = None if last is None else torch.arange(B, device=x.device) * T + last
            x = self._kernel_step(x.reshape(B * T, H), cos_sin, positions.reshape(-1), cache, arguments, rows_slots,
                                  keep)
            return self.model.norm(x.view(B, T, H) if last is None else x)
        cos, sin = self.rope(rope_len)
        cos, sin = cos[positions].unsqueeze(2).to(x.dtype), sin[positions].unsqueeze(2).to(x.dtype)  # (B, T, 1, D)
        for block in self.model.layers:
            x = block(x, cos, sin, cache, slots, mask, lengths)
        hidden = self.model.norm(x)  # over every row, as the reference norms them
        return hidden if last is None else hidden[torch.arange(B, device=x.device), last]

    @torch.inference_mode()
    def prefill(self, prompts: list[torch.Tensor], slots: list[int], cache: KVCache) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (each (T_i,)) into their slots in one pass, right-padded.

        Returns hidden (N, H) and logits (N, V) at each prompt's last position. On a CPU each is
        exactly what that prompt alone gives wherever the linear layers are row-invariant (int8):
        attention, whose kernel blocks its work by sequence length, runs per prompt over its own
        length when lengths differ, rather than over the padded length with a mask.
        """
        if self.cuda_graphs is not None and len(prompts) == 1:
            graphed = self.cuda_graphs.prefill(prompts[0], slots[0], cache)
            if graphed is not None:
                return graphed
        lengths = [p.shape[0] for p in prompts]
        N, T = len(prompts), max(lengths)
        device = prompts[0].device
        ids = torch.zeros(N, T, dtype=torch.long, device=device)
        for row, prompt in enumerate(prompts):
            ids[row, :lengths[row]] = prompt
        positions = torch.arange(T, device=device).expand(N, T)
        slot_index = torch.tensor(slots, device=device)
        mask = unequal = None  # one prompt, or equal lengths: plain causal attention
        if len(set(lengths)) > 1 and device.type == "cpu":
            unequal = lengths
        elif len(set(lengths)) > 1:  # a GPU's kernels are not row-invariant anyway: one masked call, not N
            valid = torch.arange(T, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]  # (N, T)
            causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
            mask = causal[None, None] & valid[:, None, None, :]  # (N, 1, T, T)
        last = self.run_prompts(ids, positions, cache, slot_index, mask, lengths=unequal,
                                last=torch.tensor(lengths, device=device) - 1)  # (N, H)
        return last, self.lm_head(last).float()

    @torch.inference_mode()
    def prefill_static(self, ids: torch.Tensor, slot: torch.Tensor, last: torch.Tensor, cache: KVCache):
        """`prefill` of one right-padded prompt (1, T) with fixed shapes and no host synchronization,
        for CUDA graphs: hidden (1, H) and logits (1, V) at position `last`."""
        T = ids.shape[1]
        positions = torch.arange(T, device=ids.device)[None]
        hidden = self.run_prompts(ids, positions, cache, slot, None, rope_len=T)[0].index_select(0, last)
        return hidden, self.lm_head(hidden).float()

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor, lengths: torch.Tensor, cache: KVCache,
               reach: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, lengths: (B,) for slots 0..B-1; each token goes to position lengths[b].
        `reach`, if the caller knows it, is max(lengths) + 1 (it saves CUDA graphs a look).

        Returns hidden (B, H) and logits (B, V) for the next token of each slot.

        One token per sequence is bound by per-operator overhead as much as by reading weights,
        so this is `run_prompts` written out for T = 1 with as few tensor operations as it can take.
        """
        if self.cuda_graphs is not None:
            graphed = self.cuda_graphs(ids, lengths, cache, reach)
            if graphed is not None:
                return graphed
        B = ids.shape[0]
        read_len = reach or int(lengths.max()) + 1
        mask = None
        if B > 1 and bool((lengths != lengths[0]).any()):
            mask = self._length_mask(lengths, read_len)
        return self._decode_step(ids, lengths, cache, read_len, mask, static=False)

    @torch.inference_mode()
    def decode_static(self, ids: torch.Tensor, lengths: torch.Tensor, cache: KVCache,
                      span: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`decode` with fixed shapes and no host synchronization, for CUDA graphs: attention runs
        over the cache's first `span` positions (all of them by default; more than any length),
        masked past each slot's length."""
        span = span or cache.max_len
        return self._decode_step(ids, lengths, cache, span, self._length_mask(lengths, span), static=True)

    def _length_mask(self, lengths: torch.Tensor, span: int) -> torch.Tensor:
        """Additive attention mask (B, 1, 1, span): 0 up to each slot's new position, -inf past it.
        Additive and in the activations' dtype: a boolean one would be converted in every layer."""
        key_positions = torch.arange(span, device=lengths.device)
        mask = torch.zeros(lengths.shape[0], 1, 1, span, dtype=self.model.embed_tokens.weight.dtype,
                           device=lengths.device)
        return mask.masked_fill_((key_positions[None, :] > lengths[:, None])[:, None, None, :], float("-inf"))

    def _decode_step(self, ids, lengths, cache: KVCache, read_len: int, mask, static: bool):
        """One token for every slot 0..B-1, through one of the two forms of the step in `step.py`:
        the CPU's (float32 activations, fbgemm int8 or float32 layers), or else the static one."""
        x = self.model.embed_tokens(ids)  # (B, H)
        arguments = None if static or x.dtype != torch.float32 else self._cpu_step_arguments()
        if arguments is not None:
            return self._final_norm_and_head(self._cpu_step(x, lengths, cache, read_len, mask, arguments), plain=True)
        # Elementwise rotation: on a GPU a (B, D, D) matrix per step costs more than it saves.
        cos_table, sin_table = self.rope(read_len)
        cos = cos_table[lengths].to(x.dtype)[:, None, :]  # (B, 1, D)
        sin = sin_table[lengths].to(x.dtype)[:, None, :]
        B = ids.shape[0]
        every_key, every_value = cache.k[:, :B, :, :read_len].unbind(0), cache.v[:, :B, :, :read_len].unbind(0)
        x = static_decode_layers(self.model.layers, x, cos, sin, mask, self._cache_rows(lengths, cache), cache,
                                 list(every_key), list(every_value))
        return self._final_norm_and_head(x, plain=False)

    def _cpu_step(self, x, lengths, cache: KVCache, read_len: int, mask, arguments: tuple) -> torch.Tensor:
        """`step.cpu_decode_layers` on this step's rows: compiled by TorchScript on a CPU where that
        works, else run as Python."""
        B, layers, dim = x.shape[0], self.config.num_layers, self.config.head_dim
        lone = B == 1  # one sentence: plain slices where a batch needs indexing
        table = self.rope_rows(read_len)
        cos_sin = table[read_len - 1:read_len] if lone else table[lengths]  # (B, 2D)
        if arguments[KERNEL_PARTS]:  # int8 layers on soprano's kernel, whose library attends too
            return self._kernel_step(x, cos_sin, lengths, cache, arguments)
        rotations = rope_matrices(cos_sin)  # (B, D, D)
        rows = None
        if lone:  # each layer's row for the new position, (1, kvh, D): views taken once for all layers
            key_rows = list(cache.k[:, 0:1, :, read_len - 1].unbind(0))
            value_rows = list(cache.v[:, 0:1, :, read_len - 1].unbind(0))
        else:
            rows = self._cache_rows(lengths, cache)
            key_rows = list(cache.k.view(layers, -1, dim).unbind(0))
            value_rows = list(cache.v.view(layers, -1, dim).unbind(0))
        # Keys and values as the batched matmuls take them, (B kvh, D, L) and (B kvh, L, D), made
        # once for all layers. Plain matmuls only in float32: in lower precision, oneDNN would
        # build (and keep) a kernel for every new length, hundreds of MB a sentence.
        keys_t = list(cache.k[:, :B, :, :read_len].flatten(1, 2).transpose(2, 3).unbind(0))
        values = list(cache.v[:, :B, :, :read_len].flatten(1, 2).unbind(0))
        run = None
        if x.device.type == "cpu" and not self._scripted_failed:  # half the time of the same loop in Python
            run = step.scripted_decode_layers()
        if run is not None:
            try:
                return run(x, rotations, mask, rows, key_rows, value_rows, keys_t, values, *arguments)
            except Exception as error:  # noqa: BLE001 - scripted but cannot run here (another PyTorch)
                # Python from now on; it rewrites whatever cache rows the failed call wrote.
                log.warning("TorchScript decode loop failed (%s); running it as Python", error)
                self._scripted_failed = True
        return step.cpu_decode_layers(x, rotations, mask, rows, key_rows, value_rows, keys_t, values, *arguments)

    def _kernel_step(self, x, cos_sin, lengths, cache: KVCache, arguments: tuple, slots=None,
                     keep=None) -> torch.Tensor:
        """`step.kernel_decode_layers` on these rows: row b's new position is lengths[b] in slot b,
        or slots[b] (the step reads exactly each row's own positions, so it needs no mask); only the
        rows `keep`, if given, come out."""
        run = None
        if not self._scripted_failed:
            run = step.scripted_kernel_decode_layers()
        if run is not None:
            try:
                return run(x, cos_sin, lengths, cache.k, cache.v, *arguments, slots=slots, keep=keep)
            except Exception as error:  # noqa: BLE001 - as in `_cpu_step`
                log.warning("TorchScript decode loop failed (%s); running it as Python", error)
                self._scripted_failed = True
        return step.kernel_decode_layers(x, cos_sin, lengths, cache.k, cache.v, *arguments, slots=slots, keep=keep)

    def _cache_rows(self, lengths: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Row (slot b, head h, position lengths[b]) of a layer's cache seen as (slots * kvh * L, D),
        for each slot b < B and head h: one index_copy_ per tensor and layer writes them all."""
        B, kv_heads = lengths.shape[0], self.config.num_kv_heads
        return ((torch.arange(B, device=lengths.device)[:, None] * kv_heads
                 + torch.arange(kv_heads, device=lengths.device)[None, :]) * cache.max_len
                + lengths[:, None]).reshape(-1)

    def decode_loop(self) -> str:
        """How this model's non-static decode steps run: "TorchScript" or "python" (the CPU step,
        compiled or not), or "modules" (the static step's body, for other dtypes and layers)."""
        arguments = None if self.model.embed_tokens.weight.dtype != torch.float32 else self._cpu_step_arguments()
        if arguments is None:
            return "modules"
        scripted = step.scripted_kernel_decode_layers if arguments[KERNEL_PARTS] else step.scripted_decode_layers
        on_cpu = self.model.embed_tokens.weight.device.type == "cpu"
        if on_cpu and not self._scripted_failed and scripted() is not None:
            return "TorchScript"
        return "python"

    def _final_norm_and_head(self, x: torch.Tensor, plain: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (B, H) after the final norm, and logits (B, V)."""
        if not plain:  # one rounding in lower precision
            hidden = self.model.norm(x)
        else:  # the fused norm is a composite of seven operations on a CPU
            norm = self.model.norm
            hidden = (x * norm.weight).mul_(inverse_rms(x, norm.eps))
        return hidden, self.lm_head(hidden).float()


    def _cpu_step_arguments(self) -> tuple | None:
        """The per-model arguments of `step.cpu_decode_layers` (and of `kernel_decode_layers`), or
        None where they do not apply: a linear layer that is neither int8 (`DynamicInt8Linear`) nor
        float (a bias-free float32 `nn.Linear`, or a bias-free float16 `PackedLinear`), a block that mixes int8 and
        float, or int8 layers on both fbgemm and soprano's kernel. Gathering them calls a few hundred module attributes (a few percent
        of an int8 step), so they are kept while the step's layers, weights and norms are the same
        objects on the same device: a replaced layer or moved weight is never missed."""
        parts, place = self._step_parts()
        kept = self._step_arguments
        if (kept is None or kept[1] != place or len(kept[0]) != len(parts)
                or any(a is not b for a, b in zip(kept[0], parts))):
            kept = self._step_arguments = (parts, place, self._gather_step_arguments())
        return kept[2]

    def _step_parts(self) -> tuple[list, tuple]:
        """The objects the step's arguments are made of (through the module dictionaries:
        `nn.Module`'s attribute lookup is what made gathering slow), and where the norms are."""
        found = []
        blocks = self.model._modules["layers"]
        for block in blocks:
            attn, mlp = block._modules["self_attn"], block._modules["mlp"]
            for linear in (attn._modules["qkv_proj"], attn._modules["o_proj"], mlp._modules["gate_up_proj"],
                           mlp._modules["down_proj"]):
                found += [linear, linear._parameters.get("weight"), linear.__dict__.get("packed_list"),
                          linear._buffers.get("packed_weight")]
            for norm in (block._modules["input_layernorm"], block._modules["post_attention_layernorm"],
                         attn._modules["q_norm"], attn._modules["k_norm"]):
                found.append(norm._parameters["weight"])
        norm = blocks[0]._modules["input_layernorm"]._parameters["weight"]
        return found, (norm.device, norm.dtype)

    def _gather_step_arguments(self) -> tuple | None:
        norms, qk_norms, post_norms, weights, packed, kernel_parts, int8_blocks = [], [], [], [], [], [], []
        for block in self.model.layers:
            attn, mlp = block.self_attn, block.mlp
            norms.append(block.input_layernorm.weight)
            qk_norms.append(attn.qk_norm_weight())
            post_norms.append(block.post_attention_layernorm.weight)
            linears = (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj)
            if all(getattr(linear, "packed_list", None) is not None and linear.bias is None for linear in linears):
                for linear in linears:
                    packed.extend(linear.packed_list)
                    kernel_parts.extend(linear.kernel_parts)
                int8_blocks.append(True)
            elif all(_half_packed(linear) or (type(linear) is nn.Linear and linear.bias is None
                                               and linear.weight.dtype == torch.float32)
                     for linear in linears):
                # float32 weights, or float16 ones packed for soprano's kernel (`float_linear` tells them apart)
                weights.extend(linear.packed_weight if _half_packed(linear) else linear.weight for linear in linears)
                int8_blocks.append(False)
            else:
                return None
        if packed and kernel_parts:  # the step indexes one kind of int8 layer
            return None
        if kernel_parts and self.config.head_dim % int8_kernel.HEAD_ALIGNMENT:
            return None  # the kernel's attention cannot take this head size: the modules' path
        first = self.model.layers[0]
        config, device = self.config, norms[0].device
        int8_layer = next((block.self_attn.qkv_proj for block, int8 in zip(self.model.layers, int8_blocks) if int8), None)
        input_scale = int8_layer.input_scale if int8_layer is not None else 0.0
        return (norms, qk_norms, post_norms, weights, packed, kernel_parts, int8_blocks,
                constant(first.input_layernorm.eps, device), constant(first.self_attn.q_norm.eps, device),
                config.num_heads, config.num_kv_heads, config.head_dim, config.intermediate_size, input_scale)
