"""Benchmark `soprano serve --wyoming`: time to first audio over Wyoming against HTTP, interleaved.

Starts one real server (HTTP and Wyoming on one engine) and, round after round, measures:

* http: POST /v1/audio/speech (pcm at 32 kHz, the samples Wyoming sends) -> its first body byte;
* synthesize: a Wyoming `synthesize` -> its first `audio-chunk`;
* stream: in a `synthesize-start` stream, the `synthesize-chunk` that makes the first sentence
  known complete (the next one has begun and is too long to join it) -> its first `audio-chunk`.

    python benchmarks/bench_wyoming.py                       # the tiny test checkpoint, CPU
    python benchmarks/bench_wyoming.py --model DIR --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

REPO = Path(__file__).resolve().parents[1]
SENTENCE = "The kitchen lights are off now and the door is locked."
NEXT = " I also set the thermostat to "  # enough of the next sentence that the first cannot grow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def first_chunk(client) -> float:
    while True:
        event = await client.read_event()
        if event is None or event.type == "error":
            raise RuntimeError(f"no audio: {event}")
        if AudioChunk.is_type(event.type):
            return time.perf_counter()


async def drain(client, until: str) -> None:
    while (event := await client.read_event()) is not None and event.type != until:
        pass


async def wyoming_synthesize(port: int) -> float:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        started = time.perf_counter()
        await client.write_event(Synthesize(text=SENTENCE).event())
        first = await first_chunk(client)
        await drain(client, "audio-stop")
    return first - started


async def wyoming_stream(port: int) -> float:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text=SENTENCE).event())
        await asyncio.sleep(0.05)  # the sentence is written; it is not yet known complete
        started = time.perf_counter()
        await client.write_event(SynthesizeChunk(text=NEXT).event())
        first = await first_chunk(client)
        await client.write_event(SynthesizeChunk(text="twenty degrees.").event())
        await client.write_event(SynthesizeStop().event())
        await drain(client, "synthesize-stopped")
    return first - started


def http_first_byte(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    with client.stream("POST", url + "/v1/audio/speech", timeout=60,
                      json={"model": "soprano", "input": SENTENCE, "response_format": "pcm",
                            "sample_rate": 32000}) as response:  # the samples Wyoming sends
        first = None
        for _ in response.iter_bytes():
            first = first or time.perf_counter()
    return first - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "tests" / "data" / "tiny"))
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    http_port, wyoming_port = free_port(), free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench-wyoming-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "SOPRANO_SERVER": "none"}
    command = [sys.executable, "-m", "soprano_cli", "serve", "--model", args.model, "--port", str(http_port),
               "--no-socket", "--wyoming", f"tcp://127.0.0.1:{wyoming_port}", "-q"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(folder / "log", "wb"))
    url = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        times: dict[str, list[float]] = {"http": [], "synthesize": [], "stream": []}
        # One client made beforehand: building one (its TLS context) costs more than the request.
        client = httpx.Client()
        for _ in range(args.rounds):  # interleaved: machine noise hits every path alike
            times["http"].append(http_first_byte(client, url))
            times["synthesize"].append(asyncio.run(wyoming_synthesize(wyoming_port)))
            times["stream"].append(asyncio.run(wyoming_stream(wyoming_port)))
        print(f"first audio, median of {args.rounds} interleaved rounds ({args.model}):")
        for name, values in times.items():
            print(f"  {name:<11} {1000 * statistics.median(values):7.1f} ms   "
                  f"(min {1000 * min(values):.1f}, max {1000 * max(values):.1f})")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
