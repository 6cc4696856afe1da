"""`soprano synth --play` and `synth --streaming | soprano play`: generated speech reaches the sink intact."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import soundfile
from signals import find

SOPRANO = [sys.executable, "-m", "soprano_cli"]
TEXT = "Hello world! The quick brown fox jumps over the lazy dog."


def _reference(tiny_checkpoint, tmp_path) -> np.ndarray:
    out = tmp_path / "reference.wav"
    subprocess.run([*SOPRANO, "synth", "--model", str(tiny_checkpoint), "--dtype", "float32", "-o", str(out), TEXT],
                   check=True, capture_output=True, timeout=120)
    audio, _ = soundfile.read(out, dtype="float32")
    return audio


def test_synth_play_is_heard_while_also_writing_the_file(recorder, tiny_checkpoint, tmp_path):
    sent = _reference(tiny_checkpoint, tmp_path)
    out = tmp_path / "played.wav"
    result = subprocess.run([*SOPRANO, "synth", "--model", str(tiny_checkpoint), "--dtype", "float32", "--play",
                             "-o", str(out), TEXT], capture_output=True, timeout=120, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(soundfile.read(out, dtype="float32")[0], sent, atol=1e-4)
    time.sleep(0.3)
    match = find(recorder.samples(), sent)
    assert match.peak > 0.95, match
    assert abs(match.heard_seconds - len(sent) / 32000) < 0.1, match


def test_streaming_synth_piped_into_play(recorder, tiny_checkpoint, tmp_path):
    sent = _reference(tiny_checkpoint, tmp_path)
    shell = (f"{sys.executable} -m soprano_cli synth --model {tiny_checkpoint} --dtype float32 --streaming "
             f"'{TEXT}' | {sys.executable} -m soprano_cli play")
    result = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    time.sleep(0.3)
    match = find(recorder.samples(), sent)
    assert match.peak > 0.95, match
    assert abs(match.heard_seconds - len(sent) / 32000) < 0.1, match
