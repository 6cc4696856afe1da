"""Real `soprano serve` processes on free loopback ports (helpers for the server tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from checkpoints import TINY_CHECKPOINT  # noqa: F401 (the server tests import it from here)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A `soprano serve` subprocess and how to reach it."""

    def __init__(self, folder: Path, *extra: str, env: dict | None = None, command: list[str] | None = None,
                 port: int | None = None, socket_path: Path | None = None):
        self.port = port or free_port()
        self.folder = folder
        self.socket_path = socket_path if socket_path is not None else folder / "run" / "soprano" / "soprano.sock"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / f"server-{self.port}.log"
        self.env = {**server_env(folder), **(env or {})}
        self.command = command or [sys.executable, "-m", "soprano_cli", "serve", "--model", str(TINY_CHECKPOINT),
                                   "--port", str(self.port), "--socket", str(self.socket_path),
                                   "--dtype", "float32", *extra]  # exact weights: comparisons are about the server
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0, ready=None) -> "ServerProcess":
        """Start it and wait until `ready()` (default: /health answers 200)."""
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            if (ready or self._healthy)():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /health in {timeout} s:\n{self.log()}")

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def metric(self, name: str, **headers) -> float:
        """The value of an unlabelled metric line."""
        text = httpx.get(self.url + "/metrics", headers=headers, timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)


def child_names(pid: int) -> list[str]:
    """Names of the processes `pid` started, at any depth (ffmpeg encoders, say)."""
    import psutil

    names = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            names.append(child.name())
        except psutil.NoSuchProcess:
            pass
    return names


def server_env(folder: Path) -> dict:
    """A clean environment for a server subprocess: isolated dirs, no SOPRANO_* from the developer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPRANO_")}
    home = folder / "home"
    home.mkdir(exist_ok=True)
    (folder / "run").mkdir(mode=0o700, exist_ok=True)
    env.update(HOME=str(home), XDG_RUNTIME_DIR=str(folder / "run"), HF_HOME=str(home / "hf"), HF_HUB_OFFLINE="1",
               XDG_CACHE_HOME=str(home / "cache"), PYTHONUNBUFFERED="1", SOPRANO_SERVER="none",
               # The tiny model gains nothing from threads, and spinning OpenMP threads crawl when
               # another process (pytest's own engine, a parallel job) holds the cores.
               OMP_NUM_THREADS="1")
    return env
