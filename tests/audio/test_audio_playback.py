"""`soprano play` and Player against a real sound server: what the null sink hears is what was sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
from signals import chirp
from signals import RATE, find

from soprano_cli.audio.formats import encode, float_to_int16, open_encoder

SOPRANO = [sys.executable, "-m", "soprano_cli"]
MIN_PEAK = 0.95  # normalized cross-correlation; s16 quantization alone keeps it above 0.999
MAX_GAIN_DB = 1.0


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*SOPRANO, *args], capture_output=True, timeout=30, **kwargs)


def _assert_heard(recorder, sent: np.ndarray, *, gap: float = 0.0):
    time.sleep(0.3)  # let the monitor catch up with the end of playback
    match = find(recorder.samples(), sent)
    expected = len(sent) / RATE + gap
    assert match.peak > MIN_PEAK, match
    assert abs(match.gain_db) < MAX_GAIN_DB, match
    # The whole signal, not a clipped start or an undrained end (chirp fades make edges soft).
    assert expected - 0.03 <= match.heard_seconds <= expected + 0.05, match
    return match


@pytest.mark.parametrize("how", ["file", "stdin-wav", "stdin-raw-s16", "stdin-raw-f32"])
def test_play_is_heard(recorder, tmp_path, how):
    sent = chirp(0.8)
    if how == "file":
        path = tmp_path / "chirp.wav"
        path.write_bytes(encode(sent, "wav"))
        result = _run(["play", "-q", str(path)])
    elif how == "stdin-wav":
        result = _run(["play", "-q"], input=encode(sent, "wav"))  # header sizes are real here
    elif how == "stdin-raw-s16":
        result = _run(["play", "-q", "--raw"], input=float_to_int16(sent).tobytes())
    else:
        result = _run(["play", "-q", "--raw", "--sample-format", "f32", "-"], input=sent.tobytes())
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # -q
    _assert_heard(recorder, sent)


def test_streamed_wav_from_a_slow_producer(recorder):
    """A WAV with 0xFFFFFFFF sizes arrives in two parts 0.5 s apart: silence in between, all heard."""
    sent = chirp(1.0)
    first, second = sent[: RATE * 3 // 10], sent[RATE * 3 // 10 :]
    process = subprocess.Popen([*SOPRANO, "play"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)  # the player is up and waiting on stdin
    encoder = open_encoder("wav", process.stdin, seekable=False)
    encoder.write(first)
    time.sleep(0.5)
    encoder.write(second)
    encoder.close()
    process.stdin.close()
    assert process.wait(30) == 0, process.stderr.read()
    stderr = process.stderr.read().decode()
    assert "played 1.00 s" in stderr and "underrun" in stderr, stderr
    time.sleep(0.3)
    heard = recorder.samples()
    head, tail = find(heard, first), find(heard, second)
    assert head.peak > MIN_PEAK and tail.peak > MIN_PEAK, (head, tail)
    assert abs(head.gain_db) < MAX_GAIN_DB and abs(tail.gain_db) < MAX_GAIN_DB
    # The second part starts after the first ends, with the producer's pause as silence.
    pause = (tail.lag - head.lag - len(first)) / RATE
    assert 0.05 < pause < 0.55, pause


def test_ctrl_c_stops_at_once(recorder, tmp_path):
    path = tmp_path / "long.wav"
    t = np.arange(5 * RATE) / RATE
    path.write_bytes(encode((0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), "wav"))
    process = subprocess.Popen([*SOPRANO, "play", str(path)], stderr=subprocess.PIPE)
    assert recorder.wait_for_sound(10), "playback never started"
    time.sleep(0.3)
    sent_at = time.monotonic()
    process.send_signal(signal.SIGINT)
    code = process.wait(5)
    exited_after = time.monotonic() - sent_at
    time.sleep(0.5)
    assert code == 130, process.stderr.read()
    heard = recorder.samples()
    at_signal = recorder.samples_at(sent_at)
    loud = np.nonzero(np.abs(heard) > 0.01)[0]
    sound_after = (loud[-1] - at_signal) / RATE
    print(f"exit {exited_after * 1000:.0f} ms after SIGINT, sound for {sound_after * 1000:.0f} ms")
    assert sound_after < 0.2, f"still playing {sound_after:.3f} s after Ctrl-C"
    # Typically 40-110 ms (interpreter and PortAudio teardown); the bound leaves room for slow CI.
    assert exited_after < 0.5, f"exited {exited_after:.3f} s after Ctrl-C"


def test_player_in_process(recorder):
    """What `soprano synth --play` does: push chunks as they are generated."""
    from soprano_cli.audio.playback import Player

    sent = chirp(0.6)
    with Player(RATE) as player:
        for start in range(0, len(sent), 1234):
            player.write(sent[start : start + 1234])
    assert player.frames_played == len(sent)
    _assert_heard(recorder, sent)


def test_play_function_resamples_other_rates(recorder):
    from soprano_cli.audio.playback import play
    from soprano_cli.audio.resample import resample

    sent = chirp(0.6)
    blocks = np.array_split(resample(sent, RATE, 48000)[:, None], 7)  # (frames, 1) at 48 kHz
    play(iter(blocks), 48000, 1)
    _assert_heard(recorder, sent)  # pulse converts back to the sink's 32 kHz


def test_stereo_wav_plays(recorder, tmp_path):
    sent = chirp(0.5)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([sent, sent], axis=1), RATE, subtype="PCM_24")
    result = _run(["play", "-q", str(path)])
    assert result.returncode == 0, result.stderr
    _assert_heard(recorder, sent)  # pulse downmixes to the mono sink


def test_list_devices_shows_pulse(pulse):
    result = _run(["play", "--list-devices"])
    assert result.returncode == 0, result.stderr
    names = result.stdout.decode()
    assert "pulse" in names and "default" in names, names
    assert any(line.startswith("*") for line in names.splitlines())


def test_named_device(recorder, tmp_path):
    sent = chirp(0.4)
    path = tmp_path / "c.wav"
    path.write_bytes(encode(sent, "wav"))
    result = _run(["play", "-q", "--device", "PULSE", str(path)])  # case-insensitive name match
    assert result.returncode == 0, result.stderr
    _assert_heard(recorder, sent)


@pytest.mark.parametrize("device", ["no-such-device", "999"])
def test_unknown_device_is_exit_7(pulse, tmp_path, device):
    path = tmp_path / "c.wav"
    path.write_bytes(encode(chirp(0.1), "wav"))
    result = _run(["play", "--device", device, str(path)])
    assert result.returncode == 7
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soprano: error: no output device"), lines


def test_no_sound_server_is_exit_7(tmp_path):
    path = tmp_path / "c.wav"
    path.write_bytes(encode(chirp(0.1), "wav"))
    env = {**os.environ, "PULSE_SERVER": f"unix:{tmp_path}/nothing-here"}
    result = _run(["play", str(path)], env=env)
    assert result.returncode == 7, result.stderr
    assert result.stderr.decode().count("\n") == 1


def test_missing_portaudio_is_exit_7(tmp_path):
    """`import sounddevice` raises OSError without libportaudio; that is one line and exit 7."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    path = tmp_path / "c.wav"
    path.write_bytes(encode(chirp(0.1), "wav"))
    env = {**os.environ, "PYTHONPATH": str(fake)}
    for args in (["play", str(path)], ["play", "--list-devices"]):
        result = _run(args, env=env)
        assert result.returncode == 7
        assert result.stderr.decode() == (
            "soprano: error: cannot play audio: the PortAudio library is not installed "
            "(e.g. apt install libportaudio2)\n"
        )


@pytest.mark.parametrize(
    "stdin, args, message",
    [
        (b"hello world", [], "input is not a WAV file"),
        (b"", [], "no audio on input"),
        (b"RIFF\xff\xff\xff\xffWAVEfmt ", [], "truncated WAV header"),
    ],
)
def test_bad_input_is_exit_3(pulse, stdin, args, message):
    result = _run(["play", *args], input=stdin)
    assert result.returncode == 3
    assert result.stderr.decode().startswith(f"soprano: error: {message}")


def test_missing_file_is_exit_3(pulse, tmp_path):
    result = _run(["play", str(tmp_path / "nope.wav")])
    assert result.returncode == 3
    assert "nope.wav" in result.stderr.decode()
