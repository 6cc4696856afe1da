"""Output that fails mid-run (#23): a closed pipe ends the run at once and quietly (exit 0, as the
README documents for `| head`), a full disk ends it with exit 6 and one line; never a traceback.

Regression: into a closed pipe flac exited 1 with an AssertionError from soundfile (or aborted,
exit 134, on stdin's lock at shutdown), while ogg, mp3 and opus printed one traceback per write
from libsndfile's callback and synthesized the whole input; /dev/full gave an OSError traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from soprano_cli.errors import EXIT_OUTPUT

FORMATS = ["wav", "pcm", "flac", "ogg", "mp3", "opus", "aac"]
TEXT = b"Hello world. This is a test.\n\nAnother paragraph here.\n\n"


def _command(tiny_checkpoint: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "soprano_cli", "synth", "--model", str(tiny_checkpoint), "--no-server", *args]


def _env() -> dict:
    return {**os.environ, "SOPRANO_DTYPE": "float32"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_closed_pipe_ends_the_run_at_once_and_quietly(tiny_checkpoint, fmt):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    try:
        process = subprocess.Popen(_command(tiny_checkpoint, "--format", fmt), stdin=subprocess.PIPE,
                                   stdout=write_end, stderr=subprocess.PIPE, env=_env())
    finally:
        os.close(write_end)
    process.stdin.write(TEXT)
    process.stdin.flush()
    # stdin stays open: a run that kept going after the failure would wait here for more text.
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{fmt}: still running after its output pipe closed: {process.stderr.read()[-500:]!r}")
    stderr = process.stderr.read().decode()
    process.stdin.close()
    assert code == 0, stderr
    assert stderr == ""


def _assert_one_line_exit_6(result: subprocess.CompletedProcess, where: str) -> None:
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_OUTPUT, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert "No space left on device" in stderr and where in stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_stdout_on_a_full_disk_exits_6(tiny_checkpoint, fmt):
    with open("/dev/full", "wb") as full:
        result = subprocess.run(_command(tiny_checkpoint, "--format", fmt, "Hello world."), stdout=full,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120, env=_env())
    _assert_one_line_exit_6(result, "<stdout>")


@pytest.mark.parametrize("fmt", ["wav", "ogg"])
def test_output_file_on_a_full_disk_exits_6(tiny_checkpoint, fmt):
    result = subprocess.run(_command(tiny_checkpoint, "--format", fmt, "-o", "/dev/full", "Hello world."),
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=120, env=_env())
    _assert_one_line_exit_6(result, "/dev/full")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs mount rights; skipped without them)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True)


def test_wav_that_fills_the_disk_is_an_error_not_a_short_success(tiny_checkpoint, small_tmpfs):
    # Room for the header and a little audio; "Hello world." is about 1.3 s, 85 KB of s16 at 32 kHz.
    (small_tmpfs / "filler").write_bytes(b"\0" * (64 * 1024 - 8192))
    out = small_tmpfs / "out.wav"
    result = subprocess.run(_command(tiny_checkpoint, "-o", str(out), "Hello world."), capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=120, env=_env())
    _assert_one_line_exit_6(result, str(out))
    assert soundfile.info(out).frames >= 0  # what did fit is still a readable file
