"""soprano's int8 kernel against fbgemm, side by side in one process (interleaved, so a busy
machine slows both alike):

- each LM matmul shape alone (its weight hot in the caches), soprano's product against fbgemm's;
- the whole int8 decode step of a full-size LM (weights streaming from memory), at batch 1 and
  16: soprano's kernel step (fused norms and attention) against the fbgemm step;
- the int8 decoder on a 512-frame sentence: its ConvNeXt layers on soprano's kernel (two fused
  calls a block) against fbgemm's;
- the step's attention over a full-size model's 17 layers at batch 16, as positions grow: the
  KV cache in float16 (what the kernel's int8 models keep) against float32.

    python benchmarks/bench_int8_kernel.py [--member random] [--batches 1,16]

Uses the benchmark family's checkpoint (.bench/family-<member>, written once).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def per_call_us(fn, repeat: int = 300) -> float:
    for _ in range(20):
        fn()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat * 1e6


def matmuls() -> None:
    import torch

    from soprano_cli.engine import int8_kernel, quantize

    scale = 1 / 127
    print("| matmul (out x in), rows | fbgemm µs | soprano µs | ratio |\n|---|---|---|---|")
    for out_features, in_features in ((768, 512), (512, 512), (4608, 512), (512, 2304), (8192, 512)):
        integers, scales = quantize.quantize_weight(torch.randn(out_features, in_features) * 0.02)
        parts, packed = int8_kernel.pack(integers, scales, scale), quantize.fbgemm_pack(integers, scales)
        for rows in (1, 16):
            x = torch.rand(rows, in_features) * 2 - 1
            theirs = per_call_us(lambda: quantize.fbgemm_rows(x, scale, packed))
            ours = per_call_us(lambda: int8_kernel.rows_product(x, parts, scale))
            print(f"| {out_features} x {in_features}, {rows} | {theirs:.1f} | {ours:.1f} | {theirs / ours:.2f}x |")


def steps(member: str, batches: list[int], rounds: int) -> None:
    import torch

    from soprano_cli.engine import checkpoint, int8_kernel
    from soprano_cli.engine import precision_probe as probe
    from soprano_cli.engine.engine import Engine, EngineConfig
    from soprano_cli.engine.generate import BatchGenerator, Generation
    from soprano_cli.engine.random_checkpoint import write_random_checkpoint
    from soprano_cli.engine.sampling import SamplingParams

    folder = ROOT / ".bench" / f"family-{member}"
    if not (folder / "decoder.pth").exists():
        write_random_checkpoint(folder, seed=5, statistics=member)
    engine = Engine.load(EngineConfig(model=str(folder), dtype="float32", device="cpu"))
    config, cpu = checkpoint.read_lm_config(folder), torch.device("cpu")
    smoothed = probe.smoothing_for(folder, config, engine.tokenizer, engine.decoder, cpu)
    lms = {"soprano": probe.build(folder, config, cpu, "int8", smoothed)}
    os.environ["SOPRANO_INT8_KERNEL"] = "0"  # the next build's layers take fbgemm
    int8_kernel._decided_state.cache_clear()
    lms["fbgemm"] = probe.build(folder, config, cpu, "int8", smoothed)
    prompt = engine.tokenizer.encode(checkpoint.prompt_text(probe.PROBE_TEXTS[0])).ids
    del engine
    print("\n| LM step, batch | fbgemm ms | soprano ms | ratio |\n|---|---|---|---|")
    for batch in batches:
        times: dict[str, list[float]] = {name: [] for name in lms}
        for _ in range(rounds):
            for name, lm in lms.items():  # whole runs in turn: each model's weights stream as in use
                generator = BatchGenerator(lm, max_batch=batch, device=cpu)
                for key in range(batch):
                    generator.add(Generation(key=key, prompt=prompt, params=SamplingParams(max_new_tokens=60)))
                taken = []
                while not generator.idle:
                    started = time.perf_counter()
                    generator.step()
                    taken.append(time.perf_counter() - started)
                times[name].append(statistics.median(taken[batch + 4:]) * 1000)
        theirs, ours = statistics.median(times["fbgemm"]), statistics.median(times["soprano"])
        print(f"| {batch} | {theirs:.2f} | {ours:.2f} | {theirs / ours:.2f}x |")


def decoders(member: str, rounds: int) -> None:
    import torch

    from soprano_cli.engine import int8_kernel
    from soprano_cli.engine.engine import Engine, EngineConfig

    folder = ROOT / ".bench" / f"family-{member}"  # written by steps()
    os.environ.pop("SOPRANO_INT8_KERNEL", None)  # steps() turned it off last
    int8_kernel._decided_state.cache_clear()
    engines = {"soprano": Engine.load(EngineConfig(model=str(folder), dtype="int8", device="cpu"))}
    os.environ["SOPRANO_INT8_KERNEL"] = "0"  # the next load's layers take fbgemm
    int8_kernel._decided_state.cache_clear()
    engines["fbgemm"] = Engine.load(EngineConfig(model=str(folder), dtype="int8", device="cpu"))
    frames = [torch.randn(512, engines["fbgemm"].lm.config.hidden_size, generator=torch.Generator().manual_seed(0))]
    assert engines["soprano"].decoder.decoder.convnext[0].pwconv1.kernel_parts
    times: dict[str, list[float]] = {name: [] for name in engines}
    for name, engine in engines.items():
        engine.decode(frames)  # first-call costs
    for _ in range(rounds):
        for name, engine in engines.items():
            started = time.perf_counter()
            engine.decode(frames)
            times[name].append(time.perf_counter() - started)
    theirs, ours = statistics.median(times["fbgemm"]), statistics.median(times["soprano"])
    print("\n| int8 decoder, 512 frames | fbgemm s | soprano s | ratio |\n|---|---|---|---|")
    print(f"| one sentence | {theirs:.3f} | {ours:.3f} | {theirs / ours:.2f}x |")


def attention(rounds: int) -> None:
    import torch

    from soprano_cli.engine.ops import constant

    layers, rows, heads, kv_heads, d, max_len = 17, 16, 4, 1, 128, 1024  # Soprano-1.1-80M's shapes
    generator = torch.Generator().manual_seed(0)
    caches = {dtype: [torch.randn(layers, rows, kv_heads, max_len, d, generator=generator).to(dtype) for _ in range(2)]
              for dtype in (torch.float32, torch.float16)}
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * d, generator=generator)
    qk_norm, eps = torch.ones((heads + kv_heads) * d), constant(1e-6, torch.device("cpu"))
    angles = torch.rand(rows, d, generator=generator)
    cos_sin = torch.cat([angles.cos(), angles.sin()], dim=1)
    print("\n| attention, batch 16, 17 layers: position | float32 cache ms | float16 cache ms | ratio |\n|---|---|---|---|")
    for position in (100, 300, 600):
        where = torch.full((rows,), position, dtype=torch.long)
        times: dict[torch.dtype, list[float]] = {dtype: [] for dtype in caches}
        for _ in range(rounds):
            for dtype, (keys, values) in caches.items():  # each step's caches come from memory, as in use
                times[dtype].append(per_call_us(lambda: [torch.ops.soprano.attend(
                    qkv, qk_norm, eps, cos_sin, keys, values, layer, where, heads, kv_heads) for layer in range(layers)],
                    repeat=20) / 1000)
        full, half = statistics.median(times[torch.float32]), statistics.median(times[torch.float16])
        print(f"| {position} | {full:.2f} | {half:.2f} | {full / half:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--member", default="random", help="the family member whose LM steps are timed")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from soprano_cli.engine import int8_kernel

    if not int8_kernel.available():
        raise SystemExit(f"soprano's int8 kernel is not available here: {int8_kernel.status()}")
    matmuls()
    steps(args.member, [int(b) for b in args.batches.split(",")], args.rounds)
    decoders(args.member, 2 * args.rounds + 1)
    attention(args.rounds)


if __name__ == "__main__":
    main()
