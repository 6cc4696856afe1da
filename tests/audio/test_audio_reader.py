"""read_audio_stream: incremental WAV parsing (streamed, zero-size, truncated headers) and raw PCM."""

from __future__ import annotations

import io
import os
import struct
import threading

import numpy as np
import pytest
import soundfile
from signals import chirp

from soprano_cli.audio.formats import encode, float_to_int16, wav_header
from soprano_cli.audio.reader import read_audio_stream
from soprano_cli.errors import InputTextError, InvalidParameterError

RATE = 32000


class Trickle(io.RawIOBase):
    """Hands out 1..7 bytes per read, like a slow pipe."""

    def __init__(self, data: bytes):
        self._data = data
        self._pos = 0
        self._step = 0

    def readable(self):
        return True

    def read1(self, n=-1):
        self._step = self._step % 7 + 1
        chunk = self._data[self._pos : self._pos + min(n, self._step)]
        self._pos += len(chunk)
        return chunk

    read = read1


def _read_all(data: bytes | io.RawIOBase, **kwargs):
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    rate, channels, blocks = read_audio_stream(stream, **kwargs)
    frames = list(blocks)
    audio = np.concatenate(frames) if frames else np.zeros((0, channels), np.float32)
    return rate, channels, audio


def _s16(audio):
    return float_to_int16(audio).astype(np.float32) / 32768.0


def test_wav_round_trip():
    audio = chirp(0.5)
    rate, channels, got = _read_all(encode(audio, "wav"))
    assert (rate, channels, got.shape) == (RATE, 1, (len(audio), 1))
    np.testing.assert_array_equal(got[:, 0], _s16(audio))


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0])
def test_streamed_sizes_read_to_the_end(size):
    audio = chirp(0.3)
    data = bytearray(encode(audio, "wav"))
    data[4:8] = data[40:44] = struct.pack("<I", size)
    assert len(_read_all(bytes(data))[2]) == len(audio)


def test_trickled_input_gives_the_same_samples():
    audio = chirp(0.2)
    data = encode(audio, "wav", sample_format="f32")
    _, _, got = _read_all(Trickle(data))
    np.testing.assert_array_equal(got[:, 0], audio)


def test_truncated_file_and_odd_trailing_bytes():
    data = encode(chirp(0.2), "wav")
    _, _, got = _read_all(data[:-1001])  # cut mid-sample, far short of the header's size
    assert len(got) == (len(data) - 44 - 1001) // 2


def test_data_size_is_respected_before_trailing_chunks():
    audio = chirp(0.1)
    data = encode(audio, "wav") + b"LIST\x04\x00\x00\x00INFO"
    assert len(_read_all(data)[2]) == len(audio)


def test_chunks_before_data_are_skipped():
    audio = chirp(0.1)
    plain = encode(audio, "wav")
    odd_chunk = b"junk\x03\x00\x00\x00abc\x00"  # odd size + pad byte
    data = plain[:36] + odd_chunk + plain[36:]
    data = data[:4] + struct.pack("<I", len(data) - 8) + data[8:]
    np.testing.assert_array_equal(_read_all(data)[2][:, 0], _s16(audio))


@pytest.mark.parametrize(
    "fmt, subtype, tolerance",
    [("WAV", "PCM_U8", 1 / 64), ("WAV", "PCM_24", 1e-6), ("WAV", "PCM_32", 1e-7), ("WAV", "DOUBLE", 0),
     ("WAVEX", "PCM_16", 1 / 32767), ("WAVEX", "FLOAT", 0), ("RF64", "PCM_16", 1 / 32767)],
)  # fmt: skip
def test_other_wav_encodings_and_stereo(fmt, subtype, tolerance):
    left, right = chirp(0.2), chirp(0.2, amplitude=0.25)
    audio = np.stack([left, right], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 16000, format=fmt, subtype=subtype)
    rate, channels, got = _read_all(buffer.getvalue())
    assert (rate, channels, got.shape) == (16000, 2, audio.shape)
    assert np.max(np.abs(got - audio)) <= tolerance + 1e-7


@pytest.mark.parametrize("sample_format, channels", [("s16", 1), ("s16", 2), ("f32", 1), ("f32", 3)])
def test_raw_pcm(sample_format, channels):
    audio = np.stack([chirp(0.1, amplitude=0.1 * (c + 1)) for c in range(channels)], axis=1)
    data = (float_to_int16(audio).tobytes() if sample_format == "s16" else audio.astype("<f4").tobytes()) + b"\x01"
    rate, got_channels, got = _read_all(data, raw=True, rate=24000, sample_format=sample_format, channels=channels)
    assert (rate, got_channels, got.shape) == (24000, channels, audio.shape)  # the odd byte is dropped
    assert np.max(np.abs(got - audio)) <= 1 / 32767


def test_first_block_arrives_before_the_end_of_input():
    """play starts as soon as bytes arrive: the reader must not wait for a big read to fill."""
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(read_fd, "rb")
    os.write(write_fd, wav_header(RATE) + float_to_int16(chirp(0.01)).tobytes())
    got = []
    rate, channels, blocks = read_audio_stream(stream)
    thread = threading.Thread(target=lambda: got.append(next(blocks)), daemon=True)
    thread.start()
    thread.join(2.0)
    try:
        assert got and got[0].shape == (320, 1), "the first block waited for more input"
    finally:
        os.close(write_fd)
        stream.close()


@pytest.mark.parametrize(
    "data, message",
    [(b"", "no audio on input"),
     (b"ID3\x04 an mp3", "cannot decode the input (it starts with b'ID3\\x04')"),
     (b"RIFF\x00\x00", "input is not a WAV file"),
     (b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00", "truncated WAV header"),
     (b"RIFF\xff\xff\xff\xffWAVEdata\x00\x00\x00\x00", "no fmt chunk"),
     (wav_header(RATE)[:20] + struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8) + b"data\x00\x00\x00\x00",
      "unsupported WAV encoding (format tag 0x0006")],
)  # fmt: skip
def test_bad_input(data, message):
    with pytest.raises(InputTextError) as info:
        read_audio_stream(io.BytesIO(data))
    assert info.value.message.startswith(message) or message in info.value.message
    assert info.value.exit_code == 3


def test_bad_raw_parameters():
    with pytest.raises(InvalidParameterError):
        read_audio_stream(io.BytesIO(b""), raw=True, sample_format="s24")
    with pytest.raises(InvalidParameterError):
        read_audio_stream(io.BytesIO(b""), raw=True, channels=0)
