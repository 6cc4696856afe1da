"""Benchmark `soprano serve`: throughput at 1/4/16 concurrent requests, time to first byte, daemon overhead,
and the live text WebSocket's delay from a sentence's completing delta to its first audio.

Runs a real server process on a full-size random checkpoint (the published 80M sizes; it never
emits EOS, so every request is capped at --frames frames) and drives it over HTTP:

    python benchmarks/bench_server.py                   # CPU, 100 frames (6.4 s of audio) per request
    python benchmarks/bench_server.py --model DIR --device cuda --json out.json
    python benchmarks/bench_server.py --model tests/data/tiny --live-only   # the live stream's delay alone

Targets (issue): 16 concurrent >= 4x the throughput of 1; first streamed byte <= 200 ms p50 with one
client; a short synthesis through the daemon <= 0.3 s wall beyond generation; on the tiny checkpoint,
first live audio <= 100 ms after the delta that completes a sentence (issue 20).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

SAMPLE_RATE = 24000  # pcm's default rate on the OpenAI API
BYTES_PER_SECOND = SAMPLE_RATE * 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, device: str, port: int, socket_path: Path, max_batch: int,
                 threads: int | None) -> subprocess.Popen:
    env = {**os.environ, "SOPRANO_SERVER": "none"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads in the server
    command = [sys.executable, "-m", "soprano_cli", "serve", "--model", model, "--device", device, "--port", str(port),
               "--socket", str(socket_path), "--max-batch", str(max_batch), "--max-queue", "1000", "-q"]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not start")


def speak(url: str, text: str, frames: int) -> tuple[float, float, int]:
    """One streamed pcm request: (time to first byte, total time, audio bytes)."""
    body = {"model": "soprano", "input": text, "response_format": "pcm", "max_new_tokens": frames}
    started = time.perf_counter()
    first = None
    size = 0
    with httpx.stream("POST", url + "/v1/audio/speech", json=body, timeout=600) as response:
        response.raise_for_status()
        for piece in response.iter_raw():
            if piece and first is None:
                first = time.perf_counter() - started
            size += len(piece)
    return first or 0.0, time.perf_counter() - started, size


def throughput(url: str, concurrency: int, requests: int, frames: int) -> dict:
    """`requests` requests spread over `concurrency` client threads; audio seconds per wall second."""
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        for i in counter:
            result = speak(url, f"Benchmark sentence number {i}, spoken by client threads.", frames)
            with lock:
                results.append(result)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    audio = sum(size for _, _, size in results) / BYTES_PER_SECOND
    ttfb = [first for first, _, _ in results]
    return {"concurrency": concurrency, "requests": requests, "wall_s": wall, "audio_s": audio,
            "audio_s_per_s": audio / wall, "ttfb_p50_ms": 1000 * statistics.median(ttfb),
            "ttfb_p95_ms": 1000 * percentile(ttfb, 95)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def daemon_overhead(socket_path: Path, frames: int, repeats: int) -> dict:
    """Wall time of a fresh process synthesizing one short sentence through the daemon, minus generation.

    Generation is the same call from a warm process; the difference is interpreter start, imports,
    finding the daemon and connecting: what `soprano synth` adds when a daemon is up.
    """
    script = (
        "import sys, types\n"
        "from soprano_cli.server.client import RemoteEngine, find_daemon\n"
        "url = find_daemon()\n"
        "assert url, 'no daemon found'\n"
        f"params = types.SimpleNamespace(temperature=0.0, top_p=0.95, repetition_penalty=1.2, seed=None, "
        f"max_new_tokens={frames}, retries=0)\n"
        "audio = RemoteEngine(url).synthesize(['Hello there.'], params)[0].audio\n"
        "from soprano_cli.audio.formats import encode\n"
        "sys.stdout.buffer.write(encode(audio, 'wav'))\n"
    )
    env = {**os.environ, "SOPRANO_SERVER": f"unix:{socket_path}"}
    from types import SimpleNamespace

    from soprano_cli.server.client import RemoteEngine

    remote = RemoteEngine(f"unix:{socket_path}")
    params = SimpleNamespace(temperature=0.0, top_p=0.95, repetition_penalty=1.2, seed=None, max_new_tokens=frames,
                             retries=0)
    walls, gens = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", script], env=env, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        started = time.perf_counter()
        remote.synthesize(["Hello there."], params)
        gens.append(time.perf_counter() - started)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python = time.perf_counter() - started
    return {"process_wall_s": statistics.median(walls), "generation_s": statistics.median(gens),
            "overhead_s": statistics.median(walls) - statistics.median(gens), "bare_python_s": python}


def live_latency(url: str, repeats: int, frames: int) -> dict:
    """Over one WebSocket, per sentence: from sending the delta that completes it to its first audio byte.

    A sentence is complete once the word after it is whole, so each sentence's text goes first,
    then (after the server has had time to see it and say nothing) the next word with its space.
    Beside it, in the same run, /v1/audio/speech's time to first byte for the same sentence.
    """
    import asyncio

    from websockets.asyncio.client import connect

    async def run() -> list[float]:
        delays = []
        ws_url = url.replace("http://", "ws://") + "/v1/audio/speech/stream"
        async with connect(ws_url, proxy=None, compression=None, max_size=None) as ws:
            await ws.send(json.dumps({"type": "start", "max_new_tokens": frames}))
            await ws.recv()  # the session message
            await ws.send(json.dumps({"type": "text", "text": "Live sentence number 0."}))
            for i in range(1, repeats + 1):
                await asyncio.sleep(0.05)
                sent = time.perf_counter()
                await ws.send(json.dumps({"type": "text", "text": " Live "}))  # completes the sentence before it
                while not isinstance(await ws.recv(), bytes):
                    pass
                delays.append(time.perf_counter() - sent)
                while True:  # the rest of the sentence
                    message = await ws.recv()
                    if isinstance(message, str) and json.loads(message)["type"] == "sentence.end":
                        break
                await ws.send(json.dumps({"type": "text", "text": f"sentence number {i}."}))
        return delays

    delays = asyncio.run(run())
    http = [speak(url, f"Live sentence number {i}.", frames)[0] for i in range(repeats)]
    return {"first_audio_p50_ms": 1000 * statistics.median(delays), "first_audio_p95_ms": 1000 * percentile(delays, 95),
            "http_ttfb_p50_ms": 1000 * statistics.median(http), "sentences": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: a fresh full-size random checkpoint)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=100, help="frames per request (2048 samples at 32 kHz each)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--ttfb-requests", type=int, default=20)
    parser.add_argument("--threads", type=int, help="torch threads in the server (default: torch's choice)")
    parser.add_argument("--live-requests", type=int, default=20, help="sentences timed on the live WebSocket")
    parser.add_argument("--live-only", action="store_true", help="only the live WebSocket's delay")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="soprano-bench-") as scratch:
        scratch = Path(scratch)
        model = args.model
        if model is None:
            from soprano_cli.engine.random_checkpoint import write_random_checkpoint

            model = str(scratch / "random-80m")
            write_random_checkpoint(model)
        port = free_port()
        socket_path = scratch / "run" / "soprano.sock"
        process = start_server(model, args.device, port, socket_path, args.max_batch, args.threads)
        url = f"http://127.0.0.1:{port}"
        try:
            speak(url, "Warm up.", args.frames)  # first-call costs stay out of the figures
            report: dict = {"device": args.device, "threads": args.threads, "frames_per_request": args.frames,
                            "audio_s_per_request": args.frames * 2048 / 32000, "cpus": os.cpu_count()}
            live = live_latency(url, args.live_requests, args.frames)
            report["live"] = live
            print(f"live WebSocket, sentence complete -> first audio: p50 {live['first_audio_p50_ms']:.0f} ms, "
                  f"p95 {live['first_audio_p95_ms']:.0f} ms (/v1/audio/speech first byte p50 "
                  f"{live['http_ttfb_p50_ms']:.0f} ms)", flush=True)
            if args.live_only:
                if args.json:
                    args.json.write_text(json.dumps(report, indent=2))
                return
            ttfb = [speak(url, f"Time to first byte {i}.", args.frames)[0] for i in range(args.ttfb_requests)]
            report["ttfb_one_client_ms"] = {"p50": 1000 * statistics.median(ttfb), "p95": 1000 * percentile(ttfb, 95)}
            print(f"time to first byte, one client: p50 {report['ttfb_one_client_ms']['p50']:.0f} ms, "
                  f"p95 {report['ttfb_one_client_ms']['p95']:.0f} ms", flush=True)
            levels = []
            for concurrency in args.concurrency:
                requests = max(concurrency, 4) * 2
                level = throughput(url, concurrency, requests, args.frames)
                levels.append(level)
                print(f"{concurrency:3d} concurrent: {level['audio_s_per_s']:7.2f} audio s/s  "
                      f"({level['audio_s']:.1f} s of audio in {level['wall_s']:.1f} s; ttfb p50 "
                      f"{level['ttfb_p50_ms']:.0f} ms, p95 {level['ttfb_p95_ms']:.0f} ms)", flush=True)
            report["throughput"] = levels
            if len(levels) > 1:
                report["speedup"] = levels[-1]["audio_s_per_s"] / levels[0]["audio_s_per_s"]
                print(f"speedup {levels[-1]['concurrency']} vs {levels[0]['concurrency']}: {report['speedup']:.2f}x")
            overhead = daemon_overhead(socket_path, min(args.frames, 20), repeats=5)
            report["daemon_synthesis"] = overhead
            print(f"short synthesis through the daemon from a fresh process: {overhead['process_wall_s']:.3f} s wall, "
                  f"{overhead['generation_s']:.3f} s generation, {overhead['overhead_s']:.3f} s beyond it "
                  f"(bare python start {overhead['bare_python_s']:.3f} s)")
        finally:
            process.terminate()
            process.wait(60)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
