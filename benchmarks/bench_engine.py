"""Engine benchmark: speed, latency, memory and quality drift per backend and weight precision.

    python benchmarks/bench_engine.py            # the full table (about 10 minutes on 2 cores)
    python benchmarks/bench_engine.py --quick    # 64 frames per sentence, a smoke run
    python benchmarks/bench_engine.py --device cuda --modes bfloat16,float32 --counts 1,8,64 --no-transformers
    python benchmarks/bench_engine.py --device cuda --modes bfloat16 --counts 1,8,64 --no-transformers --backend lmdeploy
    python benchmarks/bench_engine.py --family   # --dtype auto on each checkpoint with trained-model
                                                 # statistics, against the reference package (soprano-tts)
    python benchmarks/bench_engine.py --family --members norms   # one member again

On a random checkpoint with the published 80M sizes (written once to .bench/), greedy, every
sentence generating exactly --frames frames (random weights never emit EOS). Each configuration
runs in a fresh process, so load time and peak RSS are its own. Real-time factor (RTF) is audio
seconds per wall second; one sentence is the median of three runs (printed below the table), the
first streamed chunk the median of seven.
The memory-bandwidth limit is one decode step reading every LM weight
once at the bandwidth measured here; "of limit" is the float32 one-sentence speed against it.
`--backend lmdeploy` (CUDA, `pip install 'soprano-cli[lmdeploy]'`) adds a TurboMind row beside the
torch rows, from the same checkpoint and texts; its drift compares its own greedy tokens' frames
with float32 over the prefix where the tokens agree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("the quick brown fox jumps over the lazy dog while soprano reads this sentence aloud.",)
FIRST_CHUNK_TEXT = "hello, this is the first streamed sentence."  # a typical short sentence
FRAME_SECONDS = 2048 / 32000


def sentences(n: int) -> list[str]:
    return [f"sentence number {i} says that {TEXT[0]}" for i in range(n)]


def checkpoint(folder: Path) -> Path:
    if not (folder / "decoder.pth").exists():
        from soprano_cli.engine.random_checkpoint import write_random_checkpoint

        write_random_checkpoint(folder, seed=1)
    return folder


def worker(args) -> dict:
    """One configuration, measured in this (fresh) process."""
    import torch

    from soprano_cli.engine.engine import Engine, EngineConfig
    from soprano_cli.engine.sampling import SamplingParams

    started = time.perf_counter()
    engine = Engine.load(EngineConfig(model=args.checkpoint, backend=args.backend, dtype=args.dtype, device=args.device,
                                      max_batch=args.max_batch))
    load = time.perf_counter() - started
    gpu = engine.device.type == "cuda"
    params = SamplingParams(max_new_tokens=args.frames + 0)  # exactly `frames` frames: no EOS here
    started = time.perf_counter()
    engine.warm_up()  # what a daemon does at start (on CUDA: captures the decode graphs)
    warm = time.perf_counter() - started
    engine.synthesize(sentences(max(args.counts)) if gpu else ["warm up."], SamplingParams(max_new_tokens=8))
    result = {"backend": args.backend, "dtype": engine.dtype, "decoder": engine.decoder_dtype, "load_s": load, "warm_up_s": warm,
              "threads": torch.get_num_threads(), "max_batch": engine.config.max_batch,
              "first_chunk_prompt": len(engine.prompt_ids(FIRST_CHUNK_TEXT))}
    # First streamed chunk: wall time from the call to the first audible samples, the median of
    # seven (a few tens of milliseconds each, where this machine's speed swings most).
    latencies = []
    for _ in range(7):
        started = time.perf_counter()
        stream = engine.stream([FIRST_CHUNK_TEXT], SamplingParams(max_new_tokens=16), chunk_frames=1)
        for chunk in stream:
            if chunk.audio.size:
                latencies.append(time.perf_counter() - started)
                break
        stream.close()
    result["first_chunk_ms"] = 1000 * statistics.median(latencies)
    for count in args.counts:
        texts = sentences(count)
        speeds = []
        # One sentence is a few seconds, where this machine's speed drifts most: the median of three.
        for _ in range(3 if count == 1 else 1):
            started = time.perf_counter()
            out = engine.synthesize(texts, params)
            elapsed = time.perf_counter() - started
            speeds.append(sum(r.audio.size for r in out) / 32000 / elapsed)
        result[f"rtf_{count}"] = statistics.median(speeds)
        result[f"rtf_{count}_runs"] = speeds
        if count == 1:
            result["peak_rss_one_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if gpu:
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20  # torch's allocator only
        free, total = torch.cuda.mem_get_info()
        result["gpu_used_mb"] = (total - free) / 2**20  # TurboMind's own allocations too
        result["gpu"] = torch.cuda.get_device_name()
    return result


def reference_worker(args) -> dict:
    """The reference package (`soprano-tts`) on one sentence, the median of three runs: its own `infer`, as
    the parity tests drive it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from reference_impl import ReferenceSoprano

    reference = ReferenceSoprano(args.checkpoint)
    reference.tts.infer("warm up.")
    speeds = []
    for _ in range(3):  # the median of three, as ours: one run drifts with this machine's load
        started = time.perf_counter()
        audio = reference.tts.infer(sentences(1)[0])
        speeds.append(audio.numel() / 32000 / (time.perf_counter() - started))
    return {"rtf_1": statistics.median(speeds), "rtf_1_runs": speeds, "frames": audio.numel() // 2048}


def family(args) -> None:
    """`--dtype auto` on every member of the trained-statistics family, the reference's speed beside it."""
    from soprano_cli.engine.random_checkpoint import STATISTICS, write_random_checkpoint

    cache = ROOT / ".bench" / "cache"  # the auto decisions of this benchmark, apart from the user's
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "XDG_CACHE_HOME": str(cache)}
    table = []
    members = args.members.split(",") if args.members else list(STATISTICS)
    unknown = sorted(set(members) - set(STATISTICS))
    if unknown:
        raise SystemExit(f"unknown members: {', '.join(unknown)} (the family: {', '.join(STATISTICS)})")
    for name in members:
        folder = ROOT / ".bench" / f"family-{name}"
        if not (folder / "decoder.pth").exists():
            write_random_checkpoint(folder, seed=5, statistics=name)
        # The first auto load probes and caches; the measured run then loads as a user's second run does.
        probe = [sys.executable, "-c", "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout); "
                 "from soprano_cli.engine.engine import Engine, EngineConfig; "
                 f"Engine.load(EngineConfig(model={str(folder)!r}, dtype='auto', device='cpu'))"]
        decided = subprocess.run(probe, capture_output=True, text=True, env=env)
        print(f"{name}: " + " ".join(line for line in decided.stdout.splitlines() if "dtype auto" in line), file=sys.stderr)
        command = [sys.executable, __file__, "--worker", "--dtype", "auto", "--checkpoint", str(folder),
                   "--frames", str(args.frames), "--counts", "1,32"]
        ours = subprocess.run(command, capture_output=True, text=True, env=env)
        reference = subprocess.run([sys.executable, __file__, "--reference-worker", "--checkpoint", str(folder)],
                                   capture_output=True, text=True, env=env)
        if ours.returncode or reference.returncode:
            print(f"{name} failed:\n{ours.stderr[-2000:]}{reference.stderr[-2000:]}", file=sys.stderr)
            continue
        row, ref = json.loads(ours.stdout.splitlines()[-1]), json.loads(reference.stdout.splitlines()[-1])
        import torch

        from soprano_cli.engine import precision_probe

        os.environ["XDG_CACHE_HOME"] = str(cache)
        # The decision the run loaded: this kernel's and probe's (older ones stay cached beside it).
        decision = precision_probe.cached_decision(folder, torch.device("cpu"))
        chosen = next((f for f in (decision.figures if decision else []) if f.precision == row["dtype"] and f.passed), None)
        table.append((name, row, ref, chosen))
    print(f"\n{args.frames} frames per sentence; reference: soprano-tts, one sentence (median of three), same run\n")
    print("| member | auto picks | 1 sentence RTF | vs reference | 32 sentences RTF | vs reference's 1 "
          "| first chunk ms | peak RSS MB (1 sentence / 32) | audio SNR dB | greedy agreement |")
    print("|---" * 10 + "|")
    for name, row, ref, chosen in table:
        picked = chosen.label() if chosen else row["dtype"]
        print(f"| {name} | LM {picked}, decoder {row['decoder']} | {row['rtf_1']:.1f} | {row['rtf_1'] / ref['rtf_1']:.1f}x "
              f"| {row['rtf_32']:.1f} | {row['rtf_32'] / ref['rtf_1']:.1f}x | {row['first_chunk_ms']:.0f} "
              f"| {row['peak_rss_one_mb']:.0f} / {row['peak_rss_mb']:.0f} "
              f"| {f'{chosen.snr_db:.1f}' if chosen else '∞ (float32)'} "
              f"| {f'{100 * chosen.agreement:.0f} %' if chosen else '100 %'} |")


def memory_bandwidth_gbs() -> float:
    """Read bandwidth with all threads: the best of a few sums over 1 GB."""
    import torch

    data = torch.ones(256 * 1024 * 1024)  # 1 GiB of float32
    best = 0.0
    for _ in range(5):
        started = time.perf_counter()
        data.sum()
        best = max(best, data.numel() * 4 / (time.perf_counter() - started) / 1e9)
    return best


def quality(folder: Path, modes: list[str], frames: int, device: str = "cpu", backends: tuple = ("torch",)) -> dict:
    """Drift of each mode against float32 on the same tokens: hidden-state cosine and audio SNR."""
    import torch

    from soprano_cli.engine.engine import Engine, EngineConfig
    from soprano_cli.engine.measures import cosine_per_position, hidden_states, snr_db
    from soprano_cli.engine.sampling import SamplingParams

    reference = Engine.load(EngineConfig(model=str(folder), dtype="float32", device=device))
    text = sentences(1)[0]
    tokens = reference.generate([text], SamplingParams(max_new_tokens=frames))[0].tokens
    prompt = reference.prompt_ids(text)
    ids = torch.tensor(prompt + tokens, device=reference.device)
    span = slice(len(prompt) - 1, len(prompt) - 1 + len(tokens))  # positions that predicted each token
    ref_frames = hidden_states(reference.lm, ids)[span]
    ref_audio = reference.decode([ref_frames])[0]
    drift = {}
    for mode in modes:
        if mode == "float32":
            continue
        engine = Engine.load(EngineConfig(model=str(folder), dtype=mode, device=device))
        frames_mode = hidden_states(engine.lm, ids)[span]
        cosine = cosine_per_position(ref_frames, frames_mode)
        audio = engine.decode([frames_mode])[0]
        drift[engine.dtype] = {"cos_min": float(cosine.min()), "cos_mean": float(cosine.mean()),
                               "snr_db": snr_db(ref_audio, audio),  # the whole chain: LM and decoder
                               # the decoder alone, on the float32 frames
                               "decoder_snr_db": snr_db(ref_audio, engine.decode([ref_frames])[0]),
                               "decoder": engine.decoder_dtype}
    if "lmdeploy" in backends:
        drift["lmdeploy"] = lmdeploy_drift(folder, text, tokens, ref_frames, reference, frames, device)
    return drift


def lmdeploy_drift(folder: Path, text: str, tokens: list[int], ref_frames, reference, frames: int, device: str) -> dict:
    """lmdeploy generates its own tokens (no teacher forcing through its API): compare the frames
    up to and including the first one whose token differs from float32's; later ones read other tokens."""
    import torch

    from soprano_cli.engine.engine import Engine, EngineConfig
    from soprano_cli.engine.measures import cosine_per_position, snr_db
    from soprano_cli.engine.sampling import SamplingParams

    engine = Engine.load(EngineConfig(model=str(folder), backend="lmdeploy", device=device))
    sequence = engine.generate([text], SamplingParams(max_new_tokens=frames))[0]
    same = next((i for i, (a, b) in enumerate(zip(sequence.tokens, tokens)) if a != b), min(len(tokens), len(sequence.tokens)))
    count = min(same + 1, len(sequence.frames), ref_frames.shape[0])
    got = torch.stack(sequence.frames[:count]).to(ref_frames.device)
    ref_audio = reference.decode([ref_frames[:count]])[0]
    cosine = cosine_per_position(ref_frames[:count], got)
    return {"cos_min": float(cosine.min()), "cos_mean": float(cosine.mean()),
            "snr_db": snr_db(ref_audio, engine.decode([got])[0]),
            "decoder_snr_db": snr_db(ref_audio, engine.decode([ref_frames[:count]])[0]),
            "decoder": engine.decoder_dtype, "same_tokens": f"{same}/{len(tokens)}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 frames per sentence")
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--modes", default="float32,bfloat16,int8")
    parser.add_argument("--no-transformers", action="store_true")
    parser.add_argument("--family", action="store_true",
                        help="--dtype auto on each checkpoint with trained-model statistics, against soprano-tts")
    parser.add_argument("--members", default="",
                        help="with --family: only these members, comma-separated (random,outliers,norms,heavy,all)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="torch", choices=["torch", "lmdeploy"],
                        help="lmdeploy: a TurboMind row (bfloat16) beside the torch rows of --modes (CUDA only)")
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--counts", default="1,8,32", help="sentences per text, comma-separated")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--max-batch", type=int, default=None, help="sentences per LM batch (default: the engine's)")
    args = parser.parse_args()
    if args.quick:
        args.frames = 64
    if args.worker:
        args.counts = [int(c) for c in args.counts.split(",") if c]
        print(json.dumps(worker(args)))
        return
    if args.reference_worker:
        print(json.dumps(reference_worker(args)))
        return
    if args.family:
        family(args)
        return

    folder = checkpoint(ROOT / ".bench" / "soprano-80m-random")
    runs = [("torch", mode, args.counts) for mode in args.modes.split(",")]
    if args.backend == "lmdeploy":
        runs.append(("lmdeploy", "bfloat16", args.counts))
    if not args.no_transformers:
        # 32 sequential sentences would take many minutes
        runs.append(("transformers", "float32", ",".join(c for c in args.counts.split(",") if int(c) <= 8)))
    rows = []
    for backend, mode, counts in runs:
        command = [sys.executable, __file__, "--worker", "--backend", backend, "--dtype", mode, "--checkpoint",
                   str(folder), "--frames", str(args.frames), "--counts", counts, "--device", args.device]
        command += ["--max-batch", str(args.max_batch)] if args.max_batch else []
        out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if out.returncode != 0:
            print(f"{backend}/{mode} failed:\n{out.stderr}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"measured {backend}/{mode}", file=sys.stderr, flush=True)
    drift = quality(folder, args.modes.split(","), min(args.frames, 128), args.device,
                    backends=tuple(backend for backend, _, _ in runs))
    bandwidth = memory_bandwidth_gbs()

    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        weight_bytes = sum(f.get_slice(k).get_shape()[0] * (f.get_slice(k).get_shape() + [1])[1] * 4
                           for k in f.keys() if k != "model.embed_tokens.weight")
    limit_rtf = FRAME_SECONDS / (weight_bytes / (bandwidth * 1e9))

    prompt = rows[0]["first_chunk_prompt"] if rows else 0
    print(f"\nfirst chunk: a {prompt}-token prompt, chunks of 1 frame")
    print(f"{args.frames} frames per sentence; memory bandwidth {bandwidth:.1f} GB/s; float32 LM weights "
          f"{weight_bytes / 1e6:.0f} MB read per step -> limit {limit_rtf:.1f}x real time for one sentence\n")
    counts = [int(c) for c in args.counts.split(",") if c]
    print("| backend | weights | load s | " + " | ".join(f"{c} sentence{'s' if c > 1 else ''} RTF" for c in counts)
          + " | first chunk ms | peak RSS MB (1 sentence / all) | hidden cos min | audio SNR dB "
          "| decoder alone SNR dB |")
    print("|---" * (len(counts) + 8) + "|")
    transformers_one = next((r["rtf_1"] for r in rows if r["backend"] == "transformers"), None)
    for r in rows:
        q = drift.get("lmdeploy" if r["backend"] == "lmdeploy" else r["dtype"], {})
        weights = r["dtype"] + (f" + {r['decoder']} decoder" if r.get("decoder", "float32") != "float32" else "")
        cells = [r["backend"], weights, f"{r['load_s']:.2f}",
                 *(f"{r[f'rtf_{c}']:.1f}" if f"rtf_{c}" in r else "—" for c in counts),
                 f"{r['first_chunk_ms']:.0f}",
                 f"{r.get('peak_rss_one_mb', 0):.0f} / {r['peak_rss_mb']:.0f}",
                 f"{q['cos_min']:.5f}" if q else ("1 (exact)" if r["dtype"] == "float32" else "—"),
                 f"{q['snr_db']:.1f}" if q else ("∞" if r["dtype"] == "float32" else "—"),
                 f"{q['decoder_snr_db']:.1f}" if q and q["decoder"] != "float32" else "∞ (float32)"]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        if len(r.get("rtf_1_runs", [])) > 1:
            print(f"{r['backend']} {r['dtype']}, one sentence, three runs: "
                  + ", ".join(f"{speed:.1f}" for speed in r["rtf_1_runs"]))
    for r in rows:
        if "gpu" in r:
            print(f"{r['gpu']}, {r['dtype']}: batches of {r['max_batch']}, warm-up {r['warm_up_s']:.2f} s, "
                  f"peak GPU memory {r['gpu_peak_mb']:.0f} MB (torch's), {r['gpu_used_mb']:.0f} MB in use at the end")
    if "same_tokens" in drift.get("lmdeploy", {}):
        print(f"lmdeploy drift over its first {drift['lmdeploy']['same_tokens']} tokens equal to float32's")
    torch_best = max((r for r in rows if r["backend"] == "torch"), key=lambda r: r.get(f"rtf_{counts[-1]}", 0), default=None)
    for r in rows:
        if r["backend"] == "lmdeploy" and torch_best:
            print("torch " + torch_best["dtype"] + " / lmdeploy: " + ", ".join(
                f"{c} sentence{'s' if c > 1 else ''} {torch_best[f'rtf_{c}'] / r[f'rtf_{c}']:.2f}x" for c in counts)
                + f"; first chunk {r['first_chunk_ms']:.0f} ms against {torch_best['first_chunk_ms']:.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "drift": drift, "bandwidth_gbs": bandwidth}, indent=1))
    f32 = next((r for r in rows if r["backend"] == "torch" and r["dtype"] == "float32"), None)
    if f32 and transformers_one:
        print(f"\ntorch float32 / transformers, one sentence: {f32['rtf_1'] / transformers_one:.2f}x")
    if f32:
        print(f"torch float32, one sentence: {100 * f32['rtf_1'] / limit_rtf:.0f}% of the memory-bandwidth limit")


if __name__ == "__main__":
    main()
