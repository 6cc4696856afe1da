"""What Ray costs on one machine: `soprano synth --jsonl` in process against `--ray auto` with 1 and 2 workers.

    python benchmarks/bench_ray.py [--jobs 32] [--max-frames 64] [--model PATH]

The same JSONL jobs (two sentences each) go through each path as a fresh command; the default
checkpoint is random weights at the published 80M sizes (written once to .bench/), so every
sentence runs to --max-frames and each path does the same work. `--ray auto` starts a local
cluster each time, as it would for a user with none running. The in-process path and one worker
get every core; two workers get half each. Columns: the whole command's wall time (cluster start
and model loads included), then jobs and audio seconds per second of synthesis (from the -v
summary, which starts once the models are loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(model: Path, jobs: str, extra: list[str], max_frames: int) -> tuple[float, float, float]:
    """(wall s, jobs/s, audio s/s) of one `synth --jsonl` command."""
    command = [sys.executable, "-m", "soprano_cli", "synth", "--jsonl", "--model", str(model), "--dtype", "float32",
               "--max-frames", str(max_frames), "--min-seconds", "0", "--no-server", "-v", *extra]
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}  # never a cluster elsewhere
    with tempfile.TemporaryDirectory(prefix="r", dir="/tmp") as ray_temp:  # short: Unix socket paths
        started = time.perf_counter()
        done = subprocess.run(command, input=jobs.encode(), capture_output=True, check=True,
                              env={**env, "RAY_TMPDIR": ray_temp})
        wall = time.perf_counter() - started
    summary = re.search(r"(\d+) files?, ([\d.]+) s of audio in ([\d.]+) s", done.stderr.decode())
    files, audio, seconds = int(summary[1]), float(summary[2]), float(summary[3])
    return wall, files / seconds, audio / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--max-frames", type=int, default=64)
    parser.add_argument("--model", type=Path, help="checkpoint [default: random weights at the 80M sizes]")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_engine import checkpoint

    model = args.model or checkpoint(ROOT / ".bench" / "soprano-80m-random")
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as out:
        lines = [json.dumps({"text": f"This is job number {i}. It has a second sentence too.",
                             "output": f"{out}/job{i}.wav"}) for i in range(args.jobs)]
        jobs = "\n".join(lines) + "\n"
        paths = [
            ("in process (`--jsonl`)", []),
            ("`--ray auto`, 1 worker", ["--ray", "auto", "--ray-workers", "1", "--ray-cpus-per-worker", str(cores),
                                        "--no-resume"]),
            ("`--ray auto`, 2 workers", ["--ray", "auto", "--ray-workers", "2",
                                         "--ray-cpus-per-worker", str(cores / 2), "--no-resume"]),
        ]
        print(f"{args.jobs} jobs of 2 sentences, {args.max_frames} frames each, {cores} cores")
        print("| path | wall s | jobs/s | audio s/s |")
        print("|---|---|---|---|")
        for name, extra in paths:
            wall, jobs_per_s, audio_per_s = run(model, jobs, extra, args.max_frames)
            print(f"| {name} | {wall:.1f} | {jobs_per_s:.2f} | {audio_per_s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
