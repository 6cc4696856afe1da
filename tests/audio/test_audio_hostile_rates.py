"""WAV headers with implausible sample rates are input errors, not audio (#23).

Regression: `soprano play` accepted a WAV of 1 Hz or 4294967295 Hz and handed it to the device.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys

import pytest

from soprano_cli.audio.formats import wav_header
from soprano_cli.audio.reader import read_audio_stream
from soprano_cli.errors import EXIT_INPUT, InputTextError

BAD_RATES = [1, 999, 384001, 4294967295]


def _wav(rate: int) -> bytes:
    header = bytearray(wav_header(32000, "s16", 4))
    struct.pack_into("<II", header, 24, rate, (rate * 2) & 0xFFFFFFFF)  # sample rate, byte rate
    return bytes(header) + b"\0" * 8


@pytest.mark.parametrize("rate", BAD_RATES)
def test_reader_rejects_implausible_rates(rate):
    with pytest.raises(InputTextError, match=f"at {rate} Hz") as info:
        read_audio_stream(io.BytesIO(_wav(rate)))
    assert info.value.exit_code == EXIT_INPUT


@pytest.mark.parametrize("rate", [1000, 8000, 384000])
def test_reader_accepts_plausible_rates(rate):
    got_rate, channels, blocks = read_audio_stream(io.BytesIO(_wav(rate)))
    assert (got_rate, channels, sum(len(b) for b in blocks)) == (rate, 1, 4)


@pytest.mark.parametrize("rate", [1, 4294967295])
def test_play_rejects_implausible_rates(pulse, tmp_path, rate):
    path = tmp_path / "odd.wav"
    path.write_bytes(_wav(rate))
    result = subprocess.run([sys.executable, "-m", "soprano_cli", "play", str(path)], capture_output=True,
                            timeout=60)
    stderr = result.stderr.decode()
    assert result.returncode == EXIT_INPUT, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().startswith(f"soprano: error: malformed WAV header: 1 channels at {rate} Hz")
