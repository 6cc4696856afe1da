"""`soprano play` and Player against a real sound server: what the null sink hears is what was sent."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
from signals import chirp
from signals import RATE, find, without_pauses
from system_deps import needs

from soprano_cli.audio.formats import encode, float_to_int16, open_encoder

SOPRANO = [sys.executable, "-m", "soprano_cli"]
MIN_PEAK = 0.95  # normalized cross-correlation; s16 quantization alone keeps it above 0.999
MAX_GAIN_DB = 1.0

pytestmark = needs("portaudio")  # `soprano play` plays through PortAudio


DROPPED = b"soprano: playback dropped out"
ATTEMPTS = 3


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*SOPRANO, *args], capture_output=True, timeout=30, **kwargs)


def _play_heard(recorder, args, **kwargs) -> tuple[subprocess.CompletedProcess, np.ndarray]:
    """Run `soprano play` and return what the sink heard meanwhile. A run whose player says the
    machine starved it (audio lost, as on any player) proves nothing either way: run it again."""
    for _ in range(ATTEMPTS):
        start = len(recorder.samples())
        result = _run(args, **kwargs)
        time.sleep(0.3)  # let the monitor catch up with the end of playback
        if DROPPED not in result.stderr:
            break
    return result, recorder.samples()[start:]


def _assert_heard(heard: np.ndarray, sent: np.ndarray):
    match = find(heard, sent)
    expected = len(sent) / RATE
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
        result, heard = _play_heard(recorder, ["play", str(path)])
    elif how == "stdin-wav":
        result, heard = _play_heard(recorder, ["play"], input=encode(sent, "wav"))  # header sizes are real here
    elif how == "stdin-raw-s16":
        result, heard = _play_heard(recorder, ["play", "--raw"], input=float_to_int16(sent).tobytes())
    else:
        result, heard = _play_heard(recorder, ["play", "--raw", "--sample-format", "f32", "-"], input=sent.tobytes())
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(b"played 0.80 s from "), result.stderr
    _assert_heard(heard, sent)


def test_play_quiet_prints_nothing(pulse):
    result = _run(["play", "-q", "--raw"], input=float_to_int16(chirp(0.3)).tobytes())
    assert result.returncode == 0 and result.stderr == b"", result


def test_a_starved_player_says_it_dropped_out(recorder, tmp_path):
    """A player the machine does not schedule in time loses audio, as every player does; it says
    so on stderr rather than staying silent about it. A stopped process is the surest starvation."""
    path = tmp_path / "chirp.wav"
    path.write_bytes(encode(chirp(2.0), "wav"))
    for quiet in ([], ["-q"]):
        process = subprocess.Popen([*SOPRANO, "play", *quiet, str(path)], stderr=subprocess.PIPE)
        assert recorder.wait_for_sound(20), "nothing was heard"
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        process.send_signal(signal.SIGCONT)
        assert process.wait(30) == 0
        lines = process.stderr.read().decode().splitlines()
        if quiet:
            assert lines == [], lines
        else:
            assert re.fullmatch(r"soprano: playback dropped out \d+ times?: this machine was too busy to feed "
                                r"the sound device in time", lines[0]), lines
            assert lines[1].startswith("played "), lines
        time.sleep(0.3)


def test_play_latency_is_checked(pulse):
    result = _run(["play", "--latency", "0", "--raw"], input=b"")
    assert result.returncode == 2 and b"--latency" in result.stderr, result


@pytest.mark.parametrize("latency", [None, 0.5])
def test_play_latency_reaches_the_sound_server(pulse, latency):
    """What the player asks the device to hold: a tenth of a second unless --latency says otherwise."""
    player = subprocess.Popen([*SOPRANO, "play", "--raw", *(["--latency", str(latency)] if latency else [])],
                              stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        held = pulse.player_buffer_seconds(player.pid)
    finally:
        player.stdin.close()
        player.wait(30)
    want = latency or 0.1
    assert want * 0.8 <= held <= want * 1.5, held  # the server rounds to its fragments


def _wait_for_a_player(pulse, timeout: float = 30.0) -> None:
    """Until a playback stream is open on the sound server (`soprano play` opens it before it reads)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pulse.pactl("list", "short", "sink-inputs").stdout.strip():
            return
        time.sleep(0.05)
    raise AssertionError("no player opened a stream")


def test_streamed_wav_from_a_slow_producer(pulse, recorder):
    """A WAV with 0xFFFFFFFF sizes arrives in two parts 0.5 s apart: silence in between, all heard."""
    sent = chirp(1.0)
    first, second = sent[: RATE * 3 // 10], sent[RATE * 3 // 10 :]
    for _ in range(ATTEMPTS):  # as in _play_heard
        start = len(recorder.samples())
        process = subprocess.Popen([*SOPRANO, "play"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for_a_player(pulse)  # up and waiting on stdin, however busy the machine
        encoder = open_encoder("wav", process.stdin, seekable=False)
        encoder.write(first)
        time.sleep(0.5)
        encoder.write(second)
        encoder.close()
        process.stdin.close()
        assert process.wait(30) == 0, process.stderr.read()
        stderr = process.stderr.read().decode()
        time.sleep(0.3)
        if DROPPED.decode() not in stderr:
            break
    assert "played 1.00 s" in stderr and "underrun" in stderr, stderr
    heard = recorder.samples()[start:]
    # Everything sent, in order and at its level, once the pauses (exact silence) are cut out: the
    # producer's pause, and any a busy machine adds by starving the player for a moment.
    joined = np.pad(without_pauses(heard), RATE // 10)  # room around the edges, which lose their silence too
    match = find(joined, sent)
    assert match.peak > MIN_PEAK and abs(match.gain_db) < MAX_GAIN_DB, match
    # The producer's pause is heard as silence between the parts, not dropped and not padded.
    pause = find(heard, sent).heard_seconds - match.heard_seconds
    assert 0.05 < pause < 0.55, pause


_OPEN_UNKNOWN_PCM = """
import ctypes, ctypes.util, sys
if sys.argv[1] == "quiet":
    from soprano_cli.audio.playback import _sounddevice
    _sounddevice()
alsa = ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2")
print(alsa.snd_pcm_open(ctypes.byref(ctypes.c_void_p()), b"no_such_soprano_pcm", 0, 0))
"""


# Without PortAudio this test used to fail (the "quiet" child's import error) instead of skipping:
# the module's `needs("portaudio")` now skips it, or fails it under SOPRANO_TEST_REQUIRE_ALL=1.
@needs("alsa")
def test_alsa_library_messages_stay_off_stderr():
    """ALSA prints its own lines (an underrun recovered on a busy machine, here an unknown device)
    straight to stderr; once the player has loaded PortAudio, they are silenced."""
    def open_unknown(mode):
        result = subprocess.run([sys.executable, "-c", _OPEN_UNKNOWN_PCM, mode], capture_output=True, timeout=60)
        assert int(result.stdout) < 0, result  # the open failed: ALSA had something to say
        return result.stderr

    assert b"ALSA lib" in open_unknown("loud")  # what a user would otherwise see
    assert open_unknown("quiet") == b""


def _m4a(audio: np.ndarray, path) -> bytes:
    """AAC in an MP4 container, as phones and browsers write it (moov after the data)."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "f32le", "-ar", str(RATE), "-ac", "1",
                    "-i", "pipe:0", "-c:a", "aac", "-f", "ipod", "-y", str(path)],
                   input=audio.astype("<f4").tobytes(), check=True, timeout=60)
    return path.read_bytes()


@pytest.mark.parametrize("how", ["file", "stdin"])
@pytest.mark.parametrize("fmt", ["flac", "ogg", "opus", "mp3", "aac", "m4a"])
def test_play_decodes_compressed_audio(recorder, tmp_path, fmt, how):
    # Issue 15: play read only WAV and told the user to use --raw for an mp3. libsndfile decodes
    # flac, ogg, opus and mp3; ffmpeg the rest (aac, m4a).
    if fmt in ("aac", "m4a") and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    sent = chirp(0.8)
    path = tmp_path / f"chirp.{fmt}"
    data = _m4a(sent, path) if fmt == "m4a" else encode(sent, fmt)
    path.write_bytes(data)
    args = ["play", str(path)] if how == "file" else ["play"]
    result, heard = _play_heard(recorder, args, input=None if how == "file" else data)
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().startswith("played 0.8"), result.stderr  # encoder padding may add a frame
    # Pauses a busy machine adds by starving the player are exact silence: cut them out first.
    match = find(np.pad(without_pauses(heard), RATE // 10), sent)
    # Lossy codecs change the waveform a little (mp3 here: peak 0.965, 0.3 dB quieter), soften the
    # 10 ms fades at the ends (mp3: 0.767 s above the threshold) and may pad them with near-silence.
    assert match.peak > 0.9 and abs(match.gain_db) < MAX_GAIN_DB, match
    assert 0.74 <= match.heard_seconds <= 0.9, match


def test_play_without_a_decoder_gives_one_line_and_exit_3(pulse, tmp_path):
    garbage = _run(["play"], input=b"this is text, not audio")
    assert garbage.returncode == 3
    lines = garbage.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soprano: error: cannot decode the input (it starts with b'this')")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: no m4a to test with")
    path = tmp_path / "chirp.m4a"
    _m4a(chirp(0.5), path)
    no_ffmpeg = _run(["play", str(path)], env={**os.environ, "PATH": str(tmp_path)})
    assert no_ffmpeg.returncode == 3
    lines = no_ffmpeg.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soprano: error: cannot decode the input"), lines
    assert lines[0].endswith("libsndfile does not know it and ffmpeg is not on PATH; install ffmpeg, "
                             "or use --raw for headerless PCM")
