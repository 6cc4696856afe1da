"""`soprano synth --speed/--volume/--loudness`, pauses and SSML as a user runs them, and the same through SopranoTTS."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from soprano_cli.errors import EXIT_INPUT, EXIT_USAGE, InvalidParameterError

SOPRANO = [sys.executable, "-m", "soprano_cli"]
TEXT = "Hello there. How are you today?"
SSML = '<speak><s>Hello there.</s><break time="600ms"/><s>How are you today?</s></speak>'


def synth(tiny_checkpoint, tmp_path, *args, stdin: str | None = None, name="out.wav") -> np.ndarray:
    out = tmp_path / name
    command = [*SOPRANO, "synth", "--no-server", "--model", str(tiny_checkpoint), "--dtype", "float32",
               "--max-frames", "30", "-o", str(out), *args]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    audio, rate = soundfile.read(out, dtype="int16")
    assert rate == 32000
    return audio


def longest_zero_run(samples: np.ndarray) -> int:
    padded = np.concatenate([[0], (samples == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[0::2]).max(initial=0))


def test_speed_and_volume_in_one_run_stream_as_they_write(tiny_checkpoint, tmp_path):
    plain = synth(tiny_checkpoint, tmp_path, TEXT, "--min-seconds", "0", name="plain.wav")
    fast = synth(tiny_checkpoint, tmp_path, TEXT, "--min-seconds", "0", "--speed", "2", name="fast.wav")
    # Two sentences, each stretched on its own: each is half as long, give or take a sample of rounding.
    assert abs(len(fast) - len(plain) / 2) <= 1
    streamed = synth(tiny_checkpoint, tmp_path, TEXT, "--min-seconds", "0", "--speed", "2", "--streaming",
                     name="streamed.wav")
    np.testing.assert_array_equal(streamed, fast)  # 64 ms chunks stretched = whole sentences stretched
    louder = synth(tiny_checkpoint, tmp_path, TEXT, "--min-seconds", "0", "--volume", "3", name="louder.wav")
    assert np.abs(louder.astype(np.int32) - plain.astype(np.int32) * 3).max() <= 2


def test_ssml_on_stdin_has_its_pause_and_normalize_keeps_it(tiny_checkpoint, tmp_path):
    audio = synth(tiny_checkpoint, tmp_path, stdin=SSML)
    assert 0.6 * 32000 <= longest_zero_run(audio) <= 0.6 * 32000 + 64
    normalized = subprocess.run([*SOPRANO, "normalize"], input=SSML, capture_output=True, text=True, timeout=60)
    assert normalized.returncode == 0, normalized.stderr
    assert "[pause:0.6s]" in normalized.stdout and "<" not in normalized.stdout


@pytest.mark.parametrize("args, stdin, code, message", [
    (["<speak>Hello"], None, EXIT_INPUT, "not well-formed"),
    ([], '<speak><break time="forever"/></speak>', EXIT_INPUT, "not a duration"),
    (["Wait [pause:30s] here."], None, EXIT_INPUT, "longer than 10 seconds"),
    (["--speed", "9", "Hi."], None, EXIT_USAGE, "speed must be between 0.25 and 4"),
    (["--loudness", "5", "Hi."], None, EXIT_USAGE, "loudness must be between -70 and -5 LUFS"),
    (["--volume", "-1", "Hi."], None, EXIT_USAGE, "volume must be between 0 and 10"),
])
def test_bad_markup_and_values_are_one_clear_error(tiny_checkpoint, tmp_path, args, stdin, code, message):
    command = [*SOPRANO, "synth", "--no-server", "--model", str(tiny_checkpoint), "-o", str(tmp_path / "x.wav"), *args]
    done = subprocess.run(command, input=stdin or "", capture_output=True, text=True, timeout=180)
    assert done.returncode == code
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr  # one line


@pytest.fixture(scope="module")
def tts(tiny_checkpoint):
    from soprano_cli.engine.tts import SopranoTTS

    return SopranoTTS(model_path=str(tiny_checkpoint), device="cpu", dtype="float32")


def test_python_api_stream_equals_infer_with_shaping(tts):
    from soprano_cli.audio.loudness import integrated_loudness

    options = dict(speed=1.5, loudness=-28.0)
    whole = tts.infer("[pause:0.25s]" + TEXT + "[pause:0.5s]", **options).numpy()
    streamed = np.concatenate([t.numpy() for t in tts.infer_stream("[pause:0.25s]" + TEXT + "[pause:0.5s]",
                                                                    **options)])
    # The engine's streamed and whole decodes differ by float rounding (a few 1e-8) before any shaping;
    # shaping must not make more of it (a chunk seam or a gain measured on other samples would).
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(tts.speak("[pause:0.25s]" + TEXT + "[pause:0.5s]", **options), whole)
    assert not np.any(whole[:8000]) and not np.any(whole[-16000:])
    assert np.any(whole[8000:8000 + 4000])  # speech right after the leading pause
    first = tts.infer("Hello there.", loudness=-28.0).numpy()
    assert integrated_loudness(first, 32000) == pytest.approx(-28.0, abs=0.5)
    with pytest.raises(InvalidParameterError, match="speed"):
        tts.infer("Hi.", speed=0.1)


def test_batch_jobs_get_pauses_and_speed(tiny_checkpoint, tmp_path):
    """--jsonl writes each file through its own shaper: the trailing pause is in the file, speed applied."""
    import json

    jobs = [{"text": "Hello there.[pause:0.5s]", "output": str(tmp_path / "a.wav")},
            {"text": "Hello there.", "output": str(tmp_path / "b.wav")}]
    lines = "".join(json.dumps(job) + "\n" for job in jobs)
    done = subprocess.run([*SOPRANO, "synth", "--no-server", "--model", str(tiny_checkpoint), "--dtype", "float32",
                           "--max-frames", "30", "--speed", "2", "--jsonl"], input=lines, capture_output=True,
                          text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    paused, plain = (soundfile.read(tmp_path / name, dtype="int16")[0] for name in ("a.wav", "b.wav"))
    assert len(paused) == len(plain) + 16000
    assert not np.any(paused[-16000:]) and np.any(paused[:len(plain)])
