"""`soprano synth --ray` on a real local Ray cluster: outputs equal the in-process batch's, an actor killed
mid-run loses nothing, a re-run skips complete outputs and redoes the rest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

TEXTS = [
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "Soprano is an extremely lightweight text to speech model. It runs on a laptop.",
    "Short one.",
    "A longer job, with a clause or two, that the model speaks as one sentence.",
    "Numbers like 42 are read as words.",
]


@pytest.fixture
def ray_cluster(tmp_path_factory):
    """A local Ray cluster with 2 CPUs, started here and always shut down; yields its address."""
    import ray

    # Ray's sockets live under its temp dir, and a Unix socket path has at most 107 bytes: the
    # factory's folder (/tmp/pytest-of-USER/pytest-N/ray0) leaves room for Ray's session names.
    temp = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=str(temp),
             logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _jobs(folder, count: int) -> str:
    lines = [json.dumps({"text": f"{TEXTS[i % len(TEXTS)]} Job {i}.", "output": str(folder / f"job{i:02d}.wav")})
             for i in range(count)]
    return "\n".join(lines) + "\n"


def _same_audio(path, reference) -> None:
    """The same frames; samples within one s16 step (float32 sums differ in the last bits when the
    sentences share an LM batch with different neighbours: README, `soprano synth`)."""
    got, rate = sf.read(path, dtype="int16")
    want, want_rate = sf.read(reference, dtype="int16")
    assert rate == want_rate and got.shape == want.shape, path
    assert np.abs(got.astype(np.int32) - want).max() <= 1, path


def _run_ray(tiny_checkpoint, address, stdin: str, kill_after_first_output=None):
    """Run `synth --jsonl --ray ADDRESS -v` with 2 workers; optionally SIGKILL worker 1 once an output exists."""
    command = [sys.executable, "-m", "soprano_cli", "synth", "--model", str(tiny_checkpoint), "--jsonl", "--ray",
               address, "--ray-workers", "2", "--min-seconds", "0", "-v"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "SOPRANO_DTYPE": "float32"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.decode() for line in process.stderr))
    reader.start()
    process.stdin.write(stdin.encode())
    process.stdin.close()
    killed = None
    try:
        if kill_after_first_output is not None:
            deadline = time.monotonic() + 90
            while not any(kill_after_first_output.glob("*.wav")) and process.poll() is None:
                assert time.monotonic() < deadline, "".join(lines)
                time.sleep(0.05)
            pids = [int(m.group(1)) for line in list(lines) if (m := re.search(r"Ray worker 1: pid (\d+)", line))]
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        code = process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
        reader.join(10)
    return code, "".join(lines), killed


def test_ray_jobs_survive_a_killed_actor_and_equal_the_in_process_run(synth, tiny_checkpoint, ray_cluster,
                                                                      tmp_path):
    count = 24
    reference, out = tmp_path / "reference", tmp_path / "out"
    reference.mkdir()
    out.mkdir()
    assert synth("--jsonl", "--min-seconds", "0", input=_jobs(reference, count)).returncode == 0

    bad = "this line is no job\n"  # a failed job is named and does not stop the others
    code, stderr, killed = _run_ray(tiny_checkpoint, ray_cluster, _jobs(out, count) + bad,
                                    kill_after_first_output=out)
    assert code == 10, stderr  # some jobs failed: the in-process batch's exit code
    assert f"Ray worker 1 (pid {killed} on" in stderr and "died; its jobs go to another" in stderr, stderr
    assert f"stdin line {count + 1}: invalid JSON" in stderr
    assert f"{count} done, 0 skipped, 1 failed" in stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == [f"job{i:02d}.wav" for i in range(count)]  # no .part left
    for i in range(count):
        _same_audio(out / f"job{i:02d}.wav", reference / f"job{i:02d}.wav")

    # A re-run skips what is complete and redoes the rest: a missing output and a partial one left behind
    # by a killed run (only a complete file is renamed to its name).
    (out / "job03.wav").unlink()
    (out / "job05.wav").rename(out / ".job05.wav.part")
    (out / ".job05.wav.part").write_bytes(b"RIFF")
    code, stderr, _ = _run_ray(tiny_checkpoint, ray_cluster, _jobs(out, count))
    assert code == 0, stderr
    assert f"2 done, {count - 2} skipped, 0 failed" in stderr
    _same_audio(out / "job05.wav", reference / "job05.wav")
    _same_audio(out / "job03.wav", reference / "job03.wav")
    assert not (out / ".job05.wav.part").exists()


def test_ray_without_ray_installed_exits_9_with_the_install_hint(tiny_checkpoint):
    code = ("import sys; sys.modules['ray'] = None; from soprano_cli.cli.app import main; "
            "main(['synth', '--jsonl', '--ray', 'auto'])")
    result = subprocess.run([sys.executable, "-c", code], input=b'{"text": "Hi.", "output": "x.wav"}\n',
                            capture_output=True, timeout=60)
    assert result.returncode == 9
    assert result.stderr.decode().strip() == "soprano: error: --ray needs Ray: pip install 'soprano-cli[ray]'"


def test_ray_needs_a_batch_mode(synth):
    result = synth("--ray", "auto", "Hello.")
    assert result.returncode == 2
    assert "--ray runs batch jobs" in result.stderr.decode()
