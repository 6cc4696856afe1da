"""Does torch.compile pay off for the CPU decode step? Eager against inductor, same step, same shapes.

    python benchmarks/bench_compile.py            # float32, one sentence (about a minute on 2 cores)
    python benchmarks/bench_compile.py --dtype int8 --batch 16

torch.compile needs static shapes to avoid recompiling each step, so the step here attends over
the whole preallocated KV cache with a mask (the form a CUDA-graph step takes too), and writes
the new key and value with a one-hot select. Both variants run that same function; the engine's
own eager step (`Qwen3LM.decode`, which attends only over the filled part) is timed alongside.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--cache", type=int, default=640, help="KV cache positions (prompt + 512 frames)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from bench_engine import checkpoint
    from soprano_cli.engine.engine import Engine, EngineConfig

    folder = checkpoint(ROOT / ".bench" / "soprano-80m-random")
    lm = Engine.load(EngineConfig(model=str(folder), dtype=args.dtype, device="cpu")).lm
    config, B, L = lm.config, args.batch, args.cache
    heads, kv_heads, dim = config.num_heads, config.num_kv_heads, config.head_dim
    cos_table, sin_table = lm._rope_decode(L)
    shape = (config.num_layers, B, kv_heads, L, dim)
    keys, values = torch.zeros(shape), torch.zeros(shape)
    positions = torch.arange(L)

    def static_step(ids, lengths, keys, values):
        x = lm.model.embed_tokens(ids)
        cos, sin = cos_table[lengths][:, None, :], sin_table[lengths][:, None, :]
        mask = (positions[None, :] <= lengths[:, None])[:, None, None, :]
        here = (positions[None, :] == lengths[:, None])[:, None, :, None]  # (B, 1, L, 1)
        for layer, block in enumerate(lm.model.layers):
            attn = block.self_attn
            qkv = attn.qkv_proj(block.input_layernorm(x))
            qk = qkv[:, :(heads + kv_heads) * dim].view(B, heads + kv_heads, dim)
            qk = F.rms_norm(qk, (dim,), eps=attn.q_norm.eps) * attn.qk_norm_weight()
            qk = qk * cos + qk.roll(dim // 2, -1) * sin
            v = qkv[:, (heads + kv_heads) * dim:].view(B, kv_heads, dim)
            keys[layer].copy_(torch.where(here, qk[:, heads:, None, :], keys[layer]))
            values[layer].copy_(torch.where(here, v[:, :, None, :], values[layer]))
            queries = qk[:, :heads].reshape(B, kv_heads, heads // kv_heads, dim)
            out = F.scaled_dot_product_attention(queries, keys[layer], values[layer], attn_mask=mask)
            x = x + attn.o_proj(out.reshape(B, heads * dim))
            gate, up = block.mlp.gate_up_proj(block.post_attention_layernorm(x)).chunk(2, -1)
            x = x + block.mlp.down_proj(F.silu(gate) * up)
        hidden = lm.model.norm(x)
        return hidden, lm.lm_head(hidden)

    ids = torch.zeros(B, dtype=torch.long)
    start = torch.full((B,), 40, dtype=torch.long)
    cache = lm.new_cache(B, L)
    variants = [("engine eager (filled part only)", lambda i, n: lm.decode(i, n, cache)),
                ("static eager", lambda i, n: static_step(i, n, keys, values))]
    try:
        compiled = torch.compile(static_step)
        variants.append(("static torch.compile", lambda i, n: compiled(i, n, keys, values)))
    except Exception as error:  # no compiler toolchain, or an unsupported op
        print(f"torch.compile unavailable: {error}")
    print(f"{args.dtype}, batch {B}, {L}-position cache, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with torch.inference_mode():
        for name, step in variants:
            started = time.perf_counter()
            step(ids, start)
            step(ids, start + 1)
            first = time.perf_counter() - started
            for i in range(5):
                step(ids, start + i)
            started = time.perf_counter()
            steps = 100
            for i in range(steps):
                step(ids, start + i * 4)
            per_step = (time.perf_counter() - started) / steps
            print(f"{name:34s} first two calls {first:6.1f} s   step {per_step * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
