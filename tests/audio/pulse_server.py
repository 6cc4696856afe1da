"""A private PulseAudio daemon with a null sink, and a recorder of that sink's monitor.

Used by the playback tests and benchmarks/bench_play_latency.py. The daemon listens on its
own socket in a temporary folder, so it never touches a developer's running sound server;
clients reach it through PULSE_SERVER (PortAudio -> ALSA `pulse` plugin -> libpulse).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

SINK = "soprano_test"
RATE = 32000


class PulseServer:
    """pulseaudio -n with only a unix socket and a float32 mono 32 kHz null sink (the default)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.socket = self.folder / "native"
        self.address = f"unix:{self.socket}"
        self.sink = SINK
        self.monitor = f"{SINK}.monitor"
        self.process: subprocess.Popen | None = None
        self.log = self.folder / "pulseaudio.log"

    @staticmethod
    def available() -> str | None:
        """None if pulseaudio and its tools are installed, else the reason to skip (for the benchmark;
        the tests ask tests/system_deps.py, which knows the same three programs)."""
        missing = [tool for tool in ("pulseaudio", "pactl", "parec") if shutil.which(tool) is None]
        return f"not installed: {', '.join(missing)}" if missing else None

    def env(self) -> dict[str, str]:
        """Variables that point a client (libpulse, PortAudio's ALSA pulse plugin) at this daemon."""
        return {"PULSE_SERVER": self.address}

    def start(self, timeout: float = 15.0) -> PulseServer:
        home = self.folder / "home"
        runtime = self.folder / "run"
        for path in (home, runtime):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PULSE_SERVER", "DBUS_SESSION_BUS_ADDRESS", "DISPLAY")
        }
        # Its own home, runtime and state folders: as root (CI) pulseaudio only warns.
        env.update(HOME=str(home), XDG_RUNTIME_DIR=str(runtime), PULSE_RUNTIME_PATH=str(runtime / "pulse"),
                   PULSE_STATE_PATH=str(self.folder / "state"), XDG_CONFIG_HOME=str(home / ".config"))  # fmt: skip
        command = [
            "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
            "--use-pid-file=no", "--log-target=stderr", "--log-level=warning",
            # Shared memory between this daemon and parec/PortAudio clients trips a known
            # pulseaudio assertion (memblock_replace_import, issue 824); copying is plenty here.
            "--disable-shm=yes", "--enable-memfd=no",
            "-L", f"module-native-protocol-unix socket={self.socket} auth-anonymous=1",
            "-L", f"module-null-sink sink_name={SINK} format=float32le rate={RATE} channels=1",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pulseaudio exited: {self.log.read_text(errors='replace')[-2000:]}")
            if self.pactl("info").returncode == 0:
                self.pactl("set-default-sink", SINK)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("pulseaudio did not start listening in time")

    def pactl(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env()}
        return subprocess.run(["pactl", *args], env=env, capture_output=True, text=True, timeout=10)

    def player_buffer_seconds(self, pid: int, timeout: float = 60.0, settle: float = 1.0) -> float:
        """The buffer latency of process `pid`'s playback stream (what that player asked the device to
        hold, as the server granted it), waiting until it opens. By process: another test's player may
        still be closing its stream, and a stream just created may not have its buffer set yet. The
        most seen over `settle` seconds from the first reading: "Buffer Latency" is what the stream
        holds now, and a stream just opened has not filled its buffer yet (0.125 s of 0.5 once)."""
        deadline = time.monotonic() + timeout
        most, settled_at = 0, None
        while time.monotonic() < deadline and (settled_at is None or time.monotonic() < settled_at):
            for block in self.pactl("list", "sink-inputs").stdout.split("Sink Input #")[1:]:
                fields = dict(line.strip().partition(":")[::2] for line in block.splitlines())
                owner = f'application.process.id = "{pid}"'
                latency = int(fields.get("Buffer Latency", "0 usec").split()[0])
                if any(line.strip() == owner for line in block.splitlines()) and latency > 0:
                    most = max(most, latency)  # "564718 usec"
                    settled_at = settled_at or time.monotonic() + settle
            time.sleep(0.05)
        if most == 0:
            raise AssertionError(f"process {pid} opened no playback stream")
        return most / 1e6

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Recorder:
    """Records the null sink's monitor (float32 mono 32 kHz) on a thread, with arrival times.

    A recording client asking for low latency also makes the null sink render in small
    steps, as a real sound card does; without one it renders in 2-second blocks.
    """

    def __init__(self, server: PulseServer):
        self._server = server
        self._data = bytearray()
        self._marks: list[tuple[float, int]] = []  # (monotonic time, samples received so far)
        self._started = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Recorder:
        command = ["parec", f"--device={self._server.monitor}", "--raw", "--format=float32le",
                   f"--rate={RATE}", "--channels=1", "--latency-msec=20"]  # fmt: skip
        self._process = subprocess.Popen(
            command, env={**os.environ, **self._server.env()}, stdout=subprocess.PIPE
        )
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            self.__exit__()
            raise RuntimeError("parec delivered nothing within 10 s")
        return self

    def _pump(self) -> None:
        fd = self._process.stdout.fileno()
        while data := os.read(fd, 65536):
            self._data += data
            self._marks.append((time.monotonic(), len(self._data) // 4))
            self._started.set()

    def __exit__(self, *exc_info) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(5)
        if self._thread is not None:
            self._thread.join(5)

    def samples(self) -> np.ndarray:
        """Everything recorded so far."""
        data = bytes(self._data)
        return np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4")

    def samples_at(self, when: float) -> int:
        """How many samples had arrived at time `when` (time.monotonic())."""
        count = 0
        for stamp, total in self._marks:
            if stamp > when:
                break
            count = total
        return count

    def wait_for_sound(self, timeout: float = 5.0, threshold: float = 0.01) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if np.any(np.abs(self.samples()) > threshold):
                return True
            time.sleep(0.01)
        return False
