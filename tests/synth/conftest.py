"""Helpers for driving the real `soprano synth` command in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture
def synth(tiny_checkpoint):
    """Run `soprano synth` with the tiny model; returns the CompletedProcess (stdout as bytes)."""

    def run(*args, input: bytes | str | None = b"", timeout: float = 120, env: dict | None = None, model=True):
        if isinstance(input, str):
            input = input.encode()
        command = [sys.executable, "-m", "soprano_cli", "synth", *map(str, args)]
        if model:
            command += ["--model", str(tiny_checkpoint)]
        # float32 is the exact mode: frame counts and samples match the reference's.
        full_env = {**os.environ, "SOPRANO_DTYPE": "float32", **(env or {})}
        return subprocess.run(command, input=input, capture_output=True, timeout=timeout, env=full_env)

    return run
