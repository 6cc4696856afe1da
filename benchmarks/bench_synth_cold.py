"""Cold start of `soprano synth`: a fresh process from launch to a written file, wall time and peak RSS.

    python benchmarks/bench_synth_cold.py [--runs 3]

Runs `soprano synth --max-frames 16 "Hello world." > /dev/null` on a random checkpoint with the
published 80M sizes (written once to .bench/), for our torch backend in float32 and with the
`auto` weights (the quality probe already cached, as after a first run), beside the
upstream-style path that loads the LM through transformers. Each run is a new process; the
table shows the median wall time and the largest peak RSS of the runs.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(args: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run([sys.executable, "-m", "soprano_cli", "synth", *args], stdout=sink, check=True,
                       env={**os.environ, "SOPRANO_SERVER": "none"})
    wall = time.perf_counter() - started
    # ru_maxrss of children is the largest of any child so far: report it only when it grew.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_engine import checkpoint

    folder = checkpoint(ROOT / ".bench" / "soprano-80m-random")
    base = ["--model", str(folder), "--max-frames", "16", "Hello world.", "-q"]
    configs = [
        ("torch, auto (int8 here; probe cached)", [*base, "--dtype", "auto"]),
        ("torch, float32", [*base, "--dtype", "float32"]),
        ("transformers, float32 (upstream-style)", [*base, "--backend", "transformers", "--dtype", "float32"]),
    ]
    run_once(configs[0][1])  # a first `auto` run measures and caches the int8 probe
    print("| path | wall s (median) | peak RSS MB |")
    print("|---|---|---|")
    for name, command in configs:
        results = []
        for _ in range(args.runs):
            results.append(run_once(command))
        # RUSAGE_CHILDREN keeps the maximum over all children, so measure RSS in a child of its own.
        probe = subprocess.run([sys.executable, "-c", (
            "import resource, subprocess, sys, os; "
            f"subprocess.run([sys.executable, '-m', 'soprano_cli', 'synth', *{command!r}], "
            "stdout=subprocess.DEVNULL, check=True, env={**os.environ, 'SOPRANO_SERVER': 'none'}); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")],
            capture_output=True, text=True, check=True)
        wall = statistics.median(r[0] for r in results)
        print(f"| {name} | {wall:.2f} | {float(probe.stdout):.0f} |", flush=True)


if __name__ == "__main__":
    main()
