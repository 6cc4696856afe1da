"""How long `soprano play` takes from the first byte on its stdin to the first sample handed to PortAudio.

Runs against a private PulseAudio null sink (tests/audio/pulse_server.py), or the server in
$PULSE_SERVER if set. Each run starts `soprano play`, waits for it to be ready, writes a WAV
header plus 100 ms of audio and reads the timestamps that SOPRANO_TRACE_PLAYBACK makes it log
(time.monotonic(), shared by all processes on Linux). Target: median <= 50 ms.

    python3 benchmarks/bench_play_latency.py [--runs 10] [--startup 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "audio"))

from pulse_server import PulseServer, Recorder  # noqa: E402

from soprano_cli.audio.formats import float_to_int16, wav_header  # noqa: E402

TARGET_MS = 50.0
RATE = 32000


def one_run(startup: float) -> dict[str, float]:
    t = np.arange(RATE // 2) / RATE
    audio = float_to_int16(0.3 * np.sin(2 * np.pi * 440 * t)).tobytes()
    first = wav_header(RATE) + audio[: RATE // 10 * 2]  # header + 100 ms
    env = {**os.environ, "SOPRANO_TRACE_PLAYBACK": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "soprano_cli", "play", "-q"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    time.sleep(startup)  # interpreter start and device open happen before the producer's first byte
    start = time.monotonic()
    process.stdin.write(first)
    process.stdin.flush()
    process.stdin.write(audio[RATE // 10 * 2 :])
    process.stdin.close()
    stderr = process.stderr.read().decode()
    if process.wait() != 0:
        raise RuntimeError(f"soprano play failed: {stderr}")
    stamps = {}
    for line in stderr.splitlines():
        if line.startswith("soprano: trace: "):
            label, value = line.split()[2:4]
            stamps[label] = (float(value) - start) * 1000
    return stamps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--startup", type=float, default=1.0, help="seconds to let `soprano play` start")
    args = parser.parse_args()

    server = None
    if "PULSE_SERVER" not in os.environ:
        if reason := PulseServer.available():
            print(f"PulseAudio {reason}", file=sys.stderr)
            return 2
        server = PulseServer(Path(tempfile.mkdtemp(prefix="soprano-pulse-"))).start()
        os.environ["PULSE_SERVER"] = server.address
    try:
        # A low-latency recorder on the monitor clocks our null sink like a real sound card.
        with Recorder(server) if server else contextlib.nullcontext():
            runs = [one_run(args.startup) for _ in range(args.runs)]
    finally:
        if server is not None:
            server.stop()
    read = [r["first-block-read"] for r in runs]
    device = [r["first-sample-to-device"] for r in runs]
    print(f"runs: {len(runs)}")
    print(f"first byte -> first block decoded:      median {statistics.median(read):6.1f} ms")
    print(
        f"first byte -> first sample to PortAudio: median {statistics.median(device):6.1f} ms "
        f"(min {min(device):.1f}, max {max(device):.1f}; target <= {TARGET_MS:.0f} ms)"
    )
    return 0 if statistics.median(device) <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
