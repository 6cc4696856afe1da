"""Soak `soprano serve`: minutes of mixed clients, disconnects and bad requests against one daemon.

    python benchmarks/bench_soak.py                      # 10 minutes on the repo's tiny checkpoint
    python benchmarks/bench_soak.py --minutes 2 --model DIR --json soak.json

Each client thread loops over one behaviour: good requests in every format (streamed, SSE and
complete files, the framed stream of `soprano synth`), clients that leave mid-stream, slow and
stalled readers, half-open connections, oversized, malformed, cross-site and rebound-host requests,
and bursts that overflow the queue. The daemon's RSS, threads and open files are sampled all along.

Pass: RSS and threads flat (the last minute's median within --rss-slack of the second minute's;
at the end, threads back to their idle count plus asyncio's thread pool), zero 5xx, no traceback
in the server's log, and every accepted request complete and valid. Not part of the test suite:
it takes minutes.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
TEXTS = ["Hello there.", "The quick brown fox jumps over the lazy dog.",
         "Soprano speaks text on this machine. It streams audio as it is generated, sentence by sentence.",
         "On 3/14/2015 at 9:26 a.m., 1,024 people paid $12.50 each."]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Tally:
    """Outcomes by behaviour, thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.failures: list[str] = []

    def add(self, behaviour: str, outcome: str, failure: str | None = None) -> None:
        with self.lock:
            self.counts[behaviour][outcome] += 1
            if failure and len(self.failures) < 50:
                self.failures.append(f"{behaviour}: {failure}")


def accepted(tally: Tally, behaviour: str, label: str, send) -> httpx.Response | None:
    """`send()`'s response when the server took the request (200); anything else is tallied (a 429 after a pause)."""
    try:
        response = send()
    except httpx.HTTPError as error:
        tally.add(behaviour, "transport-error", f"{label}: {error!r}")
        return None
    if response.status_code == 429:
        tally.add(behaviour, "429")
        time.sleep(0.5)
        return None
    if response.status_code != 200:
        tally.add(behaviour, f"http-{response.status_code}", f"{label}: {response.text[:200]}")
        return None
    return response


def body(fmt="pcm", **extra) -> dict:
    return {"model": "soprano", "input": random.choice(TEXTS), "response_format": fmt, **extra}


def good_requests(url: str, tally: Tally, stop: threading.Event) -> None:
    """Accepted requests must be complete: a 200 whose body ends properly, with plausible audio."""
    import soundfile

    while not stop.is_set():
        kind = random.choice(["pcm", "wav", "mp3", "flac", "aac", "opus", "sse", "complete-wav", "complete-mp3"])
        fmt = kind.split("-")[-1] if kind != "sse" else "pcm"
        extra = {"stream": False} if kind.startswith("complete") else {}
        if kind == "sse":
            extra["stream_format"] = "sse"
        response = accepted(tally, "good", kind,
                            lambda: httpx.post(url + "/v1/audio/speech", json=body(fmt, **extra), timeout=300))
        if response is None:
            continue
        data = response.content
        ok = len(data) > 1000
        if kind == "sse":
            ok = ok and b"speech.audio.done" in data
        elif fmt in ("wav", "flac", "mp3") and ok:
            try:
                ok = soundfile.info(io.BytesIO(data)).frames > 0
            except Exception as error:  # noqa: BLE001 - any decoding failure is a failed request
                tally.add("good", "invalid-audio", f"{kind}: {error}")
                continue
        tally.add("good", "ok" if ok else "invalid-audio", None if ok else f"{kind}: {len(data)} bytes")


def framed_stream(url: str, tally: Tally, stop: threading.Event) -> None:
    """What `soprano synth` sends through a daemon."""
    from soprano_cli.server.protocol import KIND_ERROR, read_frames

    while not stop.is_set():
        sentences = random.sample(TEXTS, 2)
        response = accepted(tally, "stream", "2 sentences",
                            lambda: httpx.post(url + "/v1/soprano/stream", json={"sentences": sentences}, timeout=300))
        if response is None:
            continue
        frames = list(read_frames(io.BytesIO(response.content).read))
        finals = sum(frame.final for frame in frames)
        ok = finals == 2 and not any(frame.kind == KIND_ERROR for frame in frames)
        tally.add("stream", "ok" if ok else "incomplete", None if ok else f"{finals} final chunks")


def disconnects(url: str, tally: Tally, stop: threading.Event) -> None:
    """Clients that leave after the first bytes, or before any."""
    while not stop.is_set():
        try:
            with httpx.stream("POST", url + "/v1/audio/speech", json=body(random.choice(["pcm", "aac", "mp3"])),
                              timeout=60) as response:
                if response.status_code == 200 and random.random() < 0.7:
                    next(response.iter_raw(), None)
            tally.add("disconnect", "done")
        except httpx.HTTPError as error:
            tally.add("disconnect", "transport-error", repr(error))
        time.sleep(random.uniform(0, 0.3))


def slow_readers(url: str, port: int, tally: Tally, stop: threading.Event) -> None:
    """A reader that trickles, and one that stops reading (the server drops it)."""
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            payload = json.dumps({**body("pcm"), "input": " ".join(TEXTS * 6)}).encode()
            sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
            stalled = random.random() < 0.5
            started = time.monotonic()
            try:
                while time.monotonic() - started < 60 and not stop.is_set():
                    if stalled:
                        time.sleep(1)
                        continue
                    if not sock.recv(1024):
                        break
                    time.sleep(0.05)
            except OSError:
                pass
            tally.add("slow-reader", "stalled" if stalled else "trickled")


def bad_requests(url: str, port: int, tally: Tally, stop: threading.Event) -> None:
    """Each must be refused with its 4xx, never a 5xx."""
    cases = [
        ("text/plain", lambda: httpx.post(url + "/v1/audio/speech", content=json.dumps(body()),
                                          headers={"Content-Type": "text/plain"}), 415),
        ("rebound host", lambda: httpx.get(url + "/v1/models", headers={"Host": "evil.example"}), 421),
        ("cross-site", lambda: httpx.post(url + "/v1/audio/speech", json=body(),
                                          headers={"Origin": "http://evil.example"}), 403),
        ("nested", lambda: httpx.post(url + "/v1/audio/speech", content=b"[" * 100000,
                                      headers={"Content-Type": "application/json"}), 400),
        ("huge", lambda: httpx.post(url + "/v1/audio/speech", content=b" " * (2 << 20),
                                    headers={"Content-Type": "application/json"}), 413),
        ("bad field", lambda: httpx.post(url + "/v1/audio/speech", json={**body(), "temperature": 99}), 400),
        ("emoji", lambda: httpx.post(url + "/v1/audio/speech", json={**body(), "input": "\U0001F600"}), 400),
        ("unknown model", lambda: httpx.post(url + "/v1/audio/speech", json={**body(), "model": "x"}), 404),
        ("stream index", lambda: httpx.post(url + "/v1/soprano/stream",
                                            json={"sentences": ["Hi."], "start_index": 2**32}), 400),
    ]
    while not stop.is_set():
        name, send, expected = random.choice(cases)
        try:
            status = send().status_code
        except httpx.HTTPError as error:
            tally.add("bad", "transport-error", f"{name}: {error!r}")
            continue
        tally.add("bad", "ok" if status == expected else f"http-{status}",
                  None if status == expected else f"{name}: {status}, expected {expected}")
        if random.random() < 0.2:  # a half-open connection: headers that never end
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: localhost\r\n")
            threading.Timer(15, sock.close).start()
        time.sleep(random.uniform(0, 0.2))


def bursts(url: str, tally: Tally, stop: threading.Event) -> None:
    """Now and then, many requests at once: some get 429, none get 5xx."""
    while not stop.wait(random.uniform(20, 40)):
        statuses = []

        def one():
            try:
                statuses.append(httpx.post(url + "/v1/audio/speech", json=body("aac"), timeout=300).status_code)
            except httpx.HTTPError:
                statuses.append(-1)

        threads = [threading.Thread(target=one) for _ in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for status in statuses:
            tally.add("burst", str(status), None if status in (200, 429) else f"status {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default=str(REPO / "tests" / "data" / "tiny"))
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--rss-slack", type=float, default=0.10, help="allowed RSS growth, as a fraction")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    folder = Path(tempfile.mkdtemp(prefix="soprano-soak-"))
    log_path = folder / "server.log"
    env = {**os.environ, "SOPRANO_SERVER": "none", "XDG_RUNTIME_DIR": str(folder)}
    command = [sys.executable, "-m", "soprano_cli", "serve", "--model", args.model, "--dtype", args.dtype,
               "--port", str(port), "--max-queue", str(args.max_queue), "--client-timeout", "10"]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start; see {log_path}")
            time.sleep(0.2)
        process = psutil.Process(server.pid)
        idle_threads = process.num_threads()
        tally = Tally()
        stop = threading.Event()
        workers = [threading.Thread(target=good_requests, args=(url, tally, stop)) for _ in range(4)]
        workers += [threading.Thread(target=framed_stream, args=(url, tally, stop)) for _ in range(2)]
        workers += [threading.Thread(target=disconnects, args=(url, tally, stop)) for _ in range(2)]
        workers += [threading.Thread(target=slow_readers, args=(url, port, tally, stop)) for _ in range(2)]
        workers += [threading.Thread(target=bad_requests, args=(url, port, tally, stop))]
        workers += [threading.Thread(target=bursts, args=(url, tally, stop))]
        for worker in workers:
            worker.daemon = True
            worker.start()
        samples = []  # (seconds, rss MB, threads, open files)
        started = time.monotonic()
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(5)
            samples.append((time.monotonic() - started, process.memory_info().rss / 2**20, process.num_threads(),
                            process.num_fds()))
            print(f"{samples[-1][0]:6.0f} s  rss {samples[-1][1]:7.1f} MB  threads {samples[-1][2]:3d}  "
                  f"fds {samples[-1][3]:4d}", flush=True)
        stop.set()
        for worker in workers:
            worker.join(90)
        time.sleep(12)  # stalled readers are dropped, half-open connections time out
        end_threads, end_fds = process.num_threads(), process.num_fds()
        metrics = httpx.get(url + "/metrics").text
    finally:
        server.terminate()
        server.wait(60)
    five_xx = {line for line in metrics.splitlines() if 'status="5' in line and not line.endswith(" 0")}
    second = [rss for t, rss, _, _ in samples if 60 <= t < 120] or [samples[0][1]]
    last = [rss for t, rss, _, _ in samples if t >= samples[-1][0] - 60]
    growth = statistics.median(last) / statistics.median(second) - 1
    failures = tally.failures
    report = {
        "minutes": args.minutes, "outcomes": {k: dict(v) for k, v in tally.counts.items()},
        "rss_mb_second_minute": round(statistics.median(second), 1), "rss_mb_last_minute": round(statistics.median(last), 1),
        "rss_growth": round(growth, 4), "threads_idle": idle_threads, "threads_peak": max(s[2] for s in samples),
        "threads_end": end_threads, "fds_end": end_fds, "fds_peak": max(s[3] for s in samples),
        "server_5xx": sorted(five_xx), "failures": failures,
        "tracebacks_in_log": log_path.read_text(errors="replace").count("Traceback"),
    }
    # asyncio's default thread pool (encoders run there) keeps up to min(32, CPUs + 4) idle threads.
    pool = min(32, (os.cpu_count() or 1) + 4)
    report["pass"] = (growth <= args.rss_slack and end_threads <= idle_threads + pool and not five_xx
                      and not failures and report["tracebacks_in_log"] == 0)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(0 if report["pass"] else 1)


if __name__ == "__main__":
    main()
