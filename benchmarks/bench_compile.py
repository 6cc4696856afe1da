"""Does torch.compile pay off for the CPU decode step? Eager against inductor, same step, same shapes.

    python benchmarks/bench_compile.py            # float32, one sentence (about a minute on 2 cores)
    python benchmarks/bench_compile.py --dtype int8 --batch 16

torch.compile needs static shapes to avoid recompiling each step, so what is compiled is the
engine's fixed-shape step, `Qwen3LM.decode_static` (attention over the whole preallocated KV
cache, masked: the step CUDA graphs capture). It runs eager and compiled; the engine's own eager
step (`Qwen3LM.decode`, which attends only over the filled part) is timed alongside.
"""

from __future__ import annotations

import argparse
import functools
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

    from bench_engine import checkpoint
    from soprano_cli.engine.engine import Engine, EngineConfig

    folder = checkpoint(ROOT / ".bench" / "soprano-80m-random")
    lm = Engine.load(EngineConfig(model=str(folder), dtype=args.dtype, device="cpu")).lm
    B, L = args.batch, args.cache

    ids = torch.zeros(B, dtype=torch.long)
    start = torch.full((B,), 40, dtype=torch.long)
    cache, static_cache = lm.new_cache(B, L), lm.new_cache(B, L)
    variants = [("engine eager (filled part only)", lambda i, n: lm.decode(i, n, cache)),
                ("static eager", lambda i, n: lm.decode_static(i, n, static_cache))]
    try:
        # The undecorated step: dynamo cannot trace into inference_mode's decorator; the loop
        # below runs in inference mode anyway.
        compiled = torch.compile(functools.partial(type(lm).decode_static.__wrapped__, lm))
        variants.append(("static torch.compile", lambda i, n: compiled(i, n, static_cache)))
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
