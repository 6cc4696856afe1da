"""The Qwen3 language model in plain PyTorch, with a slot-based preallocated KV cache.

Sequences live in cache slots 0..B-1 (kept contiguous so decode attends over a view, not a
copy); each slot has its own length, and a finished sequence's slot is refilled by moving the
last one into it.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from torch import nn

from soprano_cli.engine.checkpoint import LMConfig
from soprano_cli.engine.memory import release_free_memory

log = logging.getLogger(__name__)


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
    return inverse_rms_with(x, _constant(eps, x.device))


def inverse_rms_with(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """`inverse_rms` with eps as a float32 scalar tensor (what TorchScript's loop passes)."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32)  # as Qwen3 accumulates
    return torch.addcmul(eps, norm, norm, value=1.0 / x.shape[-1]).rsqrt_()


@functools.lru_cache(maxsize=16)
def _constant(value: float, device: torch.device) -> torch.Tensor:
    """A float32 scalar tensor, made once: making one per call would cost two operations."""
    with torch.inference_mode(False):  # usable in and out of inference mode
        return torch.tensor(value, dtype=torch.float32, device=device)


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

    def forward(self, x, cos, sin, cache: KVCache, write_index, read_len: int, mask, lengths=None):
        B, T, _ = x.shape
        heads = self.num_heads + self.num_kv_heads
        qk, v = self.qkv_proj(x).split([self.q_size + self.kv_size, self.kv_size], dim=-1)
        # q and k heads side by side: one norm and one rotation for both (decode is op-bound).
        qk = F.rms_norm(qk.view(B, T, heads, self.head_dim), (self.head_dim,), eps=self.q_norm.eps)
        qk = qk * self.qk_norm_weight()
        qk = apply_rope(qk, cos, sin).transpose(1, 2)  # (B, h + kvh, T, D)
        q, k = qk.split([self.num_heads, self.num_kv_heads], dim=1)
        v = v.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)

        k_layer, v_layer = cache.k[self.layer], cache.v[self.layer]  # (slots, kvh, L, D)
        if isinstance(write_index, tuple):  # decode: each slot writes at its own position
            slots, positions = write_index
            if B == 1:  # a plain slice write is cheaper than an indexed one
                position = read_len - 1
                k_layer[0, :, position] = k[0, :, 0]
                v_layer[0, :, position] = v[0, :, 0]
            else:
                k_layer[slots, :, positions] = k[:, :, 0]
                v_layer[slots, :, positions] = v[:, :, 0]
            keys, values = k_layer[:B, :, :read_len], v_layer[:B, :, :read_len]
        else:  # prefill: each row into its slot (padding past a prompt's end is never read)
            k_layer[write_index, :, :T] = k
            v_layer[write_index, :, :T] = v
            keys, values = k, v
        if lengths is not None:  # prompts of unequal lengths: each attends as it would alone (see `prefill`)
            out = q.new_zeros(q.shape)  # (B, h, T, D); padded positions stay 0 and are never read
            for row, n in enumerate(lengths):
                out[row:row + 1, :, :n] = self._attend(q[row:row + 1, :, :n], keys[row:row + 1, :, :n],
                                                       values[row:row + 1, :, :n], None)
        else:
            out = self._attend(q, keys, values, mask)  # (B, h, T, D)
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

    def forward(self, x, cos, sin, cache, write_index, read_len, mask, lengths=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, write_index, read_len, mask, lengths)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    """`model.*` in the checkpoint: embeddings, blocks and the final norm."""

    def __init__(self, config: LMConfig):
        super().__init__()
        # An explicit weight skips nn.Embedding's normal_() init, which on the meta device imports
        # torch._dynamo (about a second of start-up) for values that are overwritten anyway.
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size,
                                         _weight=torch.empty(config.vocab_size, config.hidden_size))
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class Qwen3LM(nn.Module):
    """Prefill one prompt into a slot, or decode one token for every active slot."""

    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None
        self._rope_rows: torch.Tensor | None = None
        self._scripted_failed = False  # the TorchScript loop raised once: the eager loop from then on
        self.cuda_graphs = None  # a CudaGraphRunner on CUDA: decode replays captured graphs

    def new_cache(self, slots: int, max_len: int) -> KVCache:
        weight = self.model.embed_tokens.weight  # lm_head may be int8
        return KVCache(self.config, slots, max_len, weight.dtype, weight.device)

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

    def _run(self, ids, positions, cache, write_index, read_len, mask, rope_len: int | None = None, lengths=None):
        cos, sin = self.rope(rope_len or int(positions.max()) + 1)
        x = self.model.embed_tokens(ids)
        cos, sin = cos[positions].unsqueeze(2).to(x.dtype), sin[positions].unsqueeze(2).to(x.dtype)  # (B, T, 1, D)
        for block in self.model.layers:
            x = block(x, cos, sin, cache, write_index, read_len, mask, lengths)
        hidden = self.model.norm(x)
        return hidden

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
        hidden = self._run(ids, positions, cache, slot_index, T, mask, lengths=unequal)  # (N, T, H)
        last = hidden[torch.arange(N, device=device), torch.tensor(lengths, device=device) - 1]  # (N, H)
        return last, self.lm_head(last).float()

    @torch.inference_mode()
    def prefill_static(self, ids: torch.Tensor, slot: torch.Tensor, last: torch.Tensor, cache: KVCache):
        """`prefill` of one right-padded prompt (1, T) with fixed shapes and no host synchronization,
        for CUDA graphs: hidden (1, H) and logits (1, V) at position `last`."""
        T = ids.shape[1]
        positions = torch.arange(T, device=ids.device)[None]
        hidden = self._run(ids, positions, cache, slot, T, None, rope_len=T)[0].index_select(0, last)
        return hidden, self.lm_head(hidden).float()

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor, lengths: torch.Tensor, cache: KVCache,
               reach: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, lengths: (B,) for slots 0..B-1; each token goes to position lengths[b].
        `reach`, if the caller knows it, is max(lengths) + 1 (it saves CUDA graphs a look).

        Returns hidden (B, H) and logits (B, V) for the next token of each slot.

        One token per sequence is bound by per-operator overhead as much as by reading weights,
        so this is `_run` written out for T = 1 with as few tensor operations as it can take.
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
        B = ids.shape[0]
        config = self.config
        heads, kv_heads, dim = config.num_heads, config.num_kv_heads, config.head_dim
        x = self.model.embed_tokens(ids)  # (B, H)
        lone = B == 1 and not static  # one sentence: plain slices where a batch needs indexing
        if static:  # elementwise rotation: on a GPU a (B, D, D) matrix per step costs more than it saves
            cos_table, sin_table = self.rope(read_len)
            cos = cos_table[lengths].to(x.dtype)[:, None, :]  # (B, 1, D)
            sin = sin_table[lengths].to(x.dtype)[:, None, :]
        else:
            table = self.rope_rows(read_len)
            rotations = rope_matrices(table[read_len - 1:read_len] if lone else table[lengths])  # (B, D, D)
        rows = None
        if lone:  # each layer's row for the new position, (1, kvh, D): views taken once for all layers
            k_new = cache.k[:, 0:1, :, read_len - 1].unbind(0)
            v_new = cache.v[:, 0:1, :, read_len - 1].unbind(0)
        else:
            # Row (slot b, head h, position lengths[b]) of a layer's cache seen as (slots * kvh * L, D):
            # one index_copy_ per tensor and layer.
            rows = ((torch.arange(B, device=ids.device)[:, None] * kv_heads
                     + torch.arange(kv_heads, device=ids.device)[None, :]) * cache.max_len
                    + lengths[:, None]).reshape(-1)
        every_key, every_value = cache.k[:, :B, :, :read_len], cache.v[:, :B, :, :read_len]  # (layers, B, kvh, L, D)
        # Plain matmuls for eager attention in float32 (the CPU's step). Not in lower precision: on a
        # CPU oneDNN would build (and keep) a kernel for every new length, hundreds of MB a sentence.
        plain_attention = not static and x.dtype == torch.float32
        if plain_attention:  # keys and values as the batched matmuls take them, made once for all layers
            every_key, every_value = every_key.flatten(1, 2).transpose(2, 3), every_value.flatten(1, 2)
        every_key, every_value = every_key.unbind(0), every_value.unbind(0)  # one call, not one per layer
        if plain_attention and x.device.type == "cpu":  # the loop below, run by TorchScript: half the time
            scripted = self._scripted_layers()
            if scripted is not None:
                run, linears = scripted
                if lone:
                    key_rows, value_rows = list(k_new), list(v_new)
                else:
                    key_rows = list(cache.k.view(config.num_layers, -1, dim).unbind(0))
                    value_rows = list(cache.v.view(config.num_layers, -1, dim).unbind(0))
                try:
                    out = run(x, rotations, mask, rows, key_rows, value_rows, list(every_key), list(every_value),
                              *linears)
                except Exception as error:  # noqa: BLE001 - scripted but cannot run here (another PyTorch)
                    # The eager loop from now on; it rewrites whatever cache rows the failed call wrote.
                    log.warning("TorchScript decode loop failed (%s); using the eager loop", error)
                    self._scripted_failed = True
                else:
                    return self._final_norm_and_head(out, plain_attention)
        q_size, kv_size, group = heads * dim, kv_heads * dim, heads // kv_heads
        inner = config.intermediate_size
        for layer, block in enumerate(self.model.layers):
            attn = block.self_attn
            # q and k heads side by side (B, h + kvh, D): one norm and one rotation for both.
            if static:  # few, fused kernels: what a GPU wants
                qkv = attn.qkv_proj(block.input_layernorm(x))  # (B, (h + 2 kvh) D)
                qk = qkv[:, :q_size + kv_size].view(B, heads + kv_heads, dim)
                qk = apply_rope(F.rms_norm(qk, (dim,), eps=attn.q_norm.eps).mul_(attn.qk_norm_weight()), cos, sin)
                v = qkv[:, q_size + kv_size:].view(B, kv_heads, dim)
            else:  # few operations, what a CPU wants: each norm's factor applied after what it commutes with
                qkv = _normed_linear(attn.qkv_proj, block.input_layernorm, x).view(B, heads + 2 * kv_heads, dim)
                qk, v = qkv[:, :heads + kv_heads], qkv[:, heads + kv_heads:]
                qk = torch.bmm(qk * attn.qk_norm_weight(), rotations).mul_(inverse_rms(qk, attn.q_norm.eps))
            if lone:
                k_new[layer].copy_(qk[:, heads:])
                v_new[layer].copy_(v)
            else:
                cache.k[layer].view(-1, dim).index_copy_(0, rows, qk[:, heads:].reshape(-1, dim))
                cache.v[layer].view(-1, dim).index_copy_(0, rows, v.reshape(-1, dim))
            # The query heads that share a key head attend as that head's rows: no head expansion.
            if not plain_attention:
                out = F.scaled_dot_product_attention(qk[:, :heads].view(B, kv_heads, group, dim), every_key[layer],
                                                     every_value[layer], attn_mask=mask, scale=1.0)
            else:  # with one key head, the query heads are already that head's rows
                queries = qk[:, :heads] if kv_heads == 1 else qk[:, :heads].reshape(B * kv_heads, group, dim)
                out = _attend_one_position(queries, every_key[layer], every_value[layer], mask)
            norm = block.post_attention_layernorm
            if static:
                x = x + attn.o_proj(out.reshape(B, q_size))
                gate_up = block.mlp.gate_up_proj(norm(x))
            else:
                x = _added_linear(attn.o_proj, out.reshape(B, q_size), x)
                gate_up = _normed_linear(block.mlp.gate_up_proj, norm, x)
            gate, up = gate_up[:, :inner], gate_up[:, inner:]  # two slices: chunk costs four operations
            activated = F.silu(gate).mul_(up)
            if static:
                x = x + block.mlp.down_proj(activated)
            else:
                x = _added_linear(block.mlp.down_proj, activated, x)
        return self._final_norm_and_head(x, plain_attention)

    def _final_norm_and_head(self, x: torch.Tensor, plain: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (B, H) after the final norm, and logits (B, V)."""
        if not plain:  # one rounding in lower precision
            hidden = self.model.norm(x)
        else:  # the fused norm is a composite of seven operations on a CPU
            norm = self.model.norm
            hidden = (x * norm.weight).mul_(inverse_rms(x, norm.eps))
        return hidden, self.lm_head(hidden).float()

    def _scripted_layers(self):
        """The TorchScript loop over the blocks (`scripted.py`) and its per-model arguments, or None
        where it does not apply: TorchScript unavailable, or a linear layer that is neither fbgemm
        int8 nor a bias-free float32 `nn.Linear`. The arguments are gathered afresh each step (a few
        tens of microseconds), so a replaced layer or moved weight is never missed."""
        from soprano_cli.engine.scripted import scripted_decode_layers

        run = None if self._scripted_failed else scripted_decode_layers()
        if run is None:
            return None
        norms, qk_norms, post_norms, weights, packed = [], [], [], [], []
        for block in self.model.layers:
            attn, mlp = block.self_attn, block.mlp
            norms.append(block.input_layernorm.weight)
            qk_norms.append(attn.qk_norm_weight())
            post_norms.append(block.post_attention_layernorm.weight)
            for linear in (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj):
                if getattr(linear, "packed", None) is not None and linear.bias is None:
                    packed.append(linear.packed)
                elif type(linear) is nn.Linear and linear.bias is None and linear.weight.dtype == torch.float32:
                    weights.append(linear.weight)
                else:
                    return None
        if packed and weights:  # one kind for every layer
            return None
        first = self.model.layers[0]
        config, device = self.config, norms[0].device
        input_scale = first.self_attn.qkv_proj.input_scale if packed else 0.0
        return run, (norms, qk_norms, post_norms, weights, packed,
                     _constant(first.input_layernorm.eps, device), _constant(first.self_attn.q_norm.eps, device),
                     config.num_heads, config.num_kv_heads, config.head_dim, config.intermediate_size, input_scale)


def _normed_linear(linear: nn.Module, norm: RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """`linear(norm(x))` with the norm's per-row factor applied to the output instead (a bias-free
    linear layer commutes with it): fewer CPU operations than the norm itself, and one fused
    call where the layer has one (the CPU's int8 layers, which scale rows anyway)."""
    fused = getattr(linear, "normed", None)
    if fused is not None:
        return fused(x, norm.weight, norm.eps)
    if not isinstance(linear, nn.Linear) or linear.bias is not None:
        return linear(norm(x))
    return F.linear(x * norm.weight, linear.weight).mul_(inverse_rms(x, norm.eps))


def _added_linear(linear: nn.Module, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """`residual + linear(x)`, in one operation where the layer allows it: the CPU's int8 layers add
    it as they scale rows back, and a bias-free float32 layer is one addmm."""
    fused = getattr(linear, "added_to", None)
    if fused is not None:
        return fused(x, residual)
    if isinstance(linear, nn.Linear) and linear.bias is None and x.dtype == torch.float32:
        return torch.addmm(residual, x, linear.weight.t())
    return residual + linear(x)


def _attend_one_position(queries, keys_t, values, mask):
    """Attention of each slot's one new position: queries (B kvh, group, D), already scaled,
    against keys_t (B kvh, D, L) and values (B kvh, L, D); mask (B, 1, 1, L) or None.

    Two batched matmuls and a softmax, for float32 on a CPU: with a single query per head,
    torch's fused attention costs more in set-up than it saves.
    """
    scores = torch.bmm(queries, keys_t)  # (B kvh, group, L)
    if mask is not None:
        rows, group, span = scores.shape
        scores = scores.view(mask.shape[0], -1, group, span).add_(mask).view(rows, group, span)
    return torch.bmm(torch.softmax(scores, dim=-1), values)  # (B kvh, group, D)


# Our fused parameters and the checkpoint tensors they are stacked from.
_FUSED = {"self_attn.qkv_proj.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
          "mlp.gate_up_proj.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight")}


def _sources(name: str) -> tuple[str, ...]:
    """Checkpoint keys that make up our parameter `name`."""
    for fused, parts in _FUSED.items():
        if name.endswith(fused):
            prefix = name[: -len(fused)]
            return tuple(prefix + part for part in parts)
    return (name,)


def build_lm(config: LMConfig, weights, *, device="cpu", dtype: torch.dtype = torch.float32,
             int8: bool = False) -> Qwen3LM:
    """Build the LM on the meta device, then fill it tensor by tensor from the checkpoint.

    `weights` maps checkpoint keys to tensors (a dict, or a lazy `checkpoint.LMWeights`); each is
    converted to `dtype` (or quantized, with `int8`) as it is read, so peak memory stays near the
    final model's size.
    """
    from soprano_cli.errors import ModelLoadError

    with torch.device("meta"):
        model = Qwen3LM(config)
    tied = "lm_head.weight" not in weights
    used: set[str] = set()
    state = {}
    quantizing = _Quantizer(model, torch.device(device)) if int8 else None
    for name in model.state_dict():
        keys = ("model.embed_tokens.weight",) if (name == "lm_head.weight" and tied) else _sources(name)
        parts = [weights[key] for key in keys]
        used.update(keys)
        try:
            tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        except RuntimeError:
            raise ModelLoadError("model.safetensors does not match config.json: projection shapes differ") from None
        if int8 and (name == "lm_head.weight" or (name.endswith("_proj.weight") and name.startswith("model.layers."))):
            module = model.get_submodule(name.removesuffix(".weight"))
            if tuple(tensor.shape) != (module.out_features, module.in_features):
                raise ModelLoadError(f"model.safetensors does not match config.json: {name} has shape "
                                     f"{tuple(tensor.shape)}")
            quantizing.submit(name.removesuffix(".weight"), tensor)
        else:
            state[name] = tensor.to(device=device, dtype=dtype)
    if quantizing is not None:
        quantizing.finish()
    unexpected = sorted(set(weights.keys()) - used)
    if unexpected:
        raise ModelLoadError(f"model.safetensors does not match config.json: unexpected {unexpected[0]}")
    tie = tied and "lm_head.weight" in state  # an int8 head is its own (quantized) copy
    if tie:
        del state["lm_head.weight"]
    try:
        # Not strict: the int8 layers were set whole above, and a tied head is set below.
        model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ModelLoadError(f"model.safetensors does not match config.json: {' '.join(first[:2])}") from None
    if tie:
        model.tie_weights()
    return model.eval()


class _Quantizer:
    """Quantizes layers on two threads while the next tensors are read (the kernels release the
    GIL), with few float tensors in flight so peak memory stays near the int8 model's size."""

    IN_FLIGHT = 6  # measured: 3 leaves the workers waiting on reads (0.95 s against 0.62 s)
    # Freed float tensors pile up in the worker threads' heaps: trimming every few layers kept
    # the load's peak at 425 MB instead of 550 MB (the published sizes), for about 0.05 s.
    TRIM_EVERY = 4

    def __init__(self, model: nn.Module, device: torch.device):
        from concurrent.futures import ThreadPoolExecutor

        self.model, self.device = model, device
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="soprano-quantize")
        self.pending: list = []
        self.placed = 0

    def submit(self, path: str, weight: torch.Tensor) -> None:
        from soprano_cli.engine.quantize import int8_linear

        self.pending.append((path, self.pool.submit(int8_linear, weight, self.device)))
        while len(self.pending) >= self.IN_FLIGHT:
            self._place(*self.pending.pop(0))

    def finish(self) -> None:
        for path, future in self.pending:
            self._place(path, future)
        self.pending = []
        self.pool.shutdown()

    def _place(self, path: str, future) -> None:
        parent, _, child = path.rpartition(".")
        setattr(self.model.get_submodule(parent) if parent else self.model, child, future.result())
        self.placed += 1
        if self.placed % self.TRIM_EVERY == 0:
            release_free_memory()
