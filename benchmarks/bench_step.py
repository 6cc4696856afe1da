"""Where one decode step's time goes, per batch size: the LM step alone (CUDA graph replay or eager)
against the whole generator step (token choice, frames, bookkeeping), plus prefill and decoder.

    python benchmarks/bench_step.py --device cuda --dtype bfloat16 --batches 1,8,64
    python benchmarks/bench_step.py --batches 1,16          # CPU, int8/auto as the engine picks

Uses the random full-size checkpoint of bench_engine.py (written once to .bench/).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, sync, repeat: int) -> float:
    """Mean milliseconds of `fn()` over `repeat` calls after two warm-ups."""
    for _ in range(2):
        fn()
    sync()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return 1000 * (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    import torch

    from bench_engine import checkpoint, sentences  # this script's folder is on sys.path
    from soprano_cli.engine.decoder import IncrementalDecoder, decode_frames
    from soprano_cli.engine.engine import Engine, EngineConfig
    from soprano_cli.engine.generate import Generation
    from soprano_cli.engine.sampling import SamplingParams

    batches = [int(b) for b in args.batches.split(",")]
    folder = checkpoint(ROOT / ".bench" / "soprano-80m-random")
    engine = Engine.load(EngineConfig(model=str(folder), device=args.device, dtype=args.dtype, max_batch=max(batches)))
    engine.warm_up()
    gpu = engine.device.type == "cuda"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    lm, runner = engine.lm, getattr(engine.lm, "cuda_graphs", None)
    print(f"{torch.cuda.get_device_name() if gpu else 'CPU'}, LM {engine.dtype}, decoder {engine.decoder_dtype}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| batch | LM step ms (graphs/eager) | LM step ms (eager) | generator step ms | host part ms | prefill ms "
          "| decoder ms per sentence of 512 frames (batched / one by one) | first streamed push ms |")
    print("|---|---|---|---|---|---|---|---|")
    for batch in batches:
        generator = engine.new_generator()
        for index, text in enumerate(sentences(batch)):
            generator.add(Generation(key=index, prompt=engine.prompt_ids(text), index=index,
                                     params=SamplingParams(max_new_tokens=512)))
        generator.step()  # admits (prefills) the whole batch
        generator.pipelined = False  # each step on its own, so the timings add up
        if generator._inflight is not None:
            generator.step()
        ids = torch.tensor([s.tokens[-1] for s in generator.active], device=engine.device)
        lengths = torch.tensor([s.length for s in generator.active], device=engine.device)
        prompts = [torch.tensor(s.prompt, device=engine.device) for s in generator.active]
        # Prefill rewrites the prompts' own keys and values: the cache stays as it was.
        prefill = timed(lambda: lm.prefill(prompts, list(range(batch)), generator.cache), sync, 5)
        step = timed(lambda: lm.decode(ids, lengths, generator.cache), sync, args.repeat)
        eager = (timed(lambda: lm.decode_static(ids, lengths, generator.cache), sync, args.repeat)
                 if runner is not None else step)
        whole = timed(generator.step, sync, min(args.repeat, 100))
        # The host's part alone: the same steps with the LM's answer ready at once.
        canned = lm.decode(ids, lengths, generator.cache)
        lm.decode = lambda *_: (canned[0].clone(), canned[1].clone())
        host = timed(generator.step, sync, min(args.repeat, 100))
        del lm.decode
        frames = torch.randn(batch, 512, lm.config.hidden_size)
        batched = timed(lambda: engine.decode(list(frames)), sync, 2) / batch
        single = timed(lambda: decode_frames(engine.decoder, frames[0].to(engine.device)), sync, 2)
        first_frames = next(t for t in range(1, 64) if engine.decoder.ready_samples(t, False) > 0)
        first_push = timed(lambda: IncrementalDecoder(engine.decoder).push(frames[0, :first_frames].to(engine.device)),
                           sync, 10)
        print(f"| {batch} | {step:.3f} | {eager:.3f} | {whole:.3f} | {host:.3f} | {prefill:.1f} "
              f"| {batched:.1f} / {single:.1f} | {first_push:.1f} |")


def timed_once(fn, sync) -> float:
    sync()
    started = time.perf_counter()
    fn()
    sync()
    return 1000 * (time.perf_counter() - started)


if __name__ == "__main__":
    main()
