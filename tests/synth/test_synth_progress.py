"""`soprano synth` progress on a terminal (a real pty), and nothing on stderr when it is not one."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading

SENTENCES = " ".join(f"Sentence number {n} is here." for n in range(1, 7))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_a_terminal(args, *, stdin: bytes = b"", timeout: float = 120) -> tuple[int, str]:
    """Run `soprano synth ARGS` with stderr on a pty (120 columns); (exit code, what the pty showed)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "SOPRANO_DTYPE": "float32", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "soprano_cli", "synth", *map(str, args)],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=terminal, env=env)
    os.close(terminal)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    process.communicate(stdin, timeout=timeout)
    reader.join(10)
    os.close(controller)
    return process.returncode, ANSI.sub("", shown.decode(errors="replace")).replace("\r", "\n")


def test_synth_shows_sentences_audio_and_speed_on_a_terminal(tiny_checkpoint, tmp_path):
    # Issue 15: a long synth showed nothing on a terminal until it ended.
    code, shown = run_on_a_terminal(["--model", tiny_checkpoint, "--min-seconds", "0", "-o", tmp_path / "a.wav",
                                     SENTENCES])
    assert code == 0, shown
    counts = re.findall(r"(\d+)/(\d+)(\+?) sentences", shown)
    assert counts and counts[-1] == ("6", "6", ""), shown
    final = [line for line in shown.splitlines() if "6/6 sentences" in line][-1]
    seconds, speed = re.search(r"([\d.]+) s audio, ([\d.]+)x real time", final).groups()
    assert float(seconds) > 1 and float(speed) > 0


def test_synth_from_stdin_counts_the_sentences_read_so_far(tiny_checkpoint, tmp_path):
    code, shown = run_on_a_terminal(["--model", tiny_checkpoint, "--min-seconds", "0", "-o", tmp_path / "a.wav"],
                                    stdin=SENTENCES.encode())
    assert code == 0, shown
    counts = re.findall(r"(\d+)/(\d+)(\+?) sentences", shown)
    assert counts[-1] == ("6", "6", ""), shown
    assert all(int(done) <= int(total) <= 6 for done, total, _ in counts)


def test_batch_progress_shows_the_job_count(tiny_checkpoint, tmp_path):
    # Issue 15: batch modes showed "0/?": the folder's files are counted first, stdin's jobs as read.
    source = tmp_path / "in"
    source.mkdir()
    for name in ("one", "two", "three"):
        (source / f"{name}.txt").write_text(f"This is file {name}.")
    code, shown = run_on_a_terminal(["--model", tiny_checkpoint, "--input-dir", source, "--output-dir",
                                     tmp_path / "out"])
    assert code == 0, shown
    counts = re.findall(r"(\d+)/(\S+) files", shown)
    assert counts and counts[-1] == ("3", "3") and all(total == "3" for _, total in counts), shown
    assert "?" not in shown
    jobs = "".join(json.dumps({"text": f"Job {n}.", "output": str(tmp_path / f"{n}.wav")}) + "\n" for n in range(4))
    code, shown = run_on_a_terminal(["--model", tiny_checkpoint, "--jsonl"], stdin=jobs.encode())
    assert code == 0, shown
    counts = re.findall(r"(\d+)/(\d+)(\+?) files", shown)
    assert counts and counts[-1] == ("4", "4", "") and "?" not in shown, shown
    summary = re.findall(r"([\d.]+) s audio, ([\d.]+)x real time", shown)
    assert summary and float(summary[-1][0]) > 0


def test_nothing_on_stderr_when_it_is_not_a_terminal(synth, tmp_path):
    result = synth("--min-seconds", "0", "-o", tmp_path / "a.wav", SENTENCES)
    assert result.returncode == 0 and result.stderr == b""
    job = json.dumps({"text": "Job.", "output": str(tmp_path / "job.wav")}) + "\n"
    result = synth("--jsonl", input=job)
    assert result.returncode == 0 and result.stderr == b""
    verbose = synth("--jsonl", "-v", input=job)
    assert verbose.stderr.decode().strip().splitlines()[-1].startswith("soprano: 1 file, ")
