"""Encoders: every format read back by soundfile, sox and ffprobe; streaming, headers, resampling."""

from __future__ import annotations

import io
import struct
import subprocess

import numpy as np
import pytest
import soundfile
from signals import chirp
from system_deps import have, needs

from soprano_cli.audio import formats
from soprano_cli.audio.formats import (
    SUPPORTED_FORMATS,
    FfmpegEncoder,
    encode,
    float_to_int16,
    format_from_path,
    open_encoder,
)
from soprano_cli.audio.resample import StreamResampler, resample
from soprano_cli.errors import InvalidParameterError, OutputError

RATE = 32000
needs_ffmpeg = needs("ffmpeg")
needs_sox = needs("sox")
COMPRESSED = ("flac", "ogg", "opus", "mp3", "aac")
# aac has no libsndfile encoder: only ffmpeg writes it.
FORMATS = [pytest.param(fmt, marks=needs_ffmpeg) if fmt == "aac" else fmt for fmt in SUPPORTED_FORMATS]
# Decoded length may exceed the input by codec priming/padding (mp3, aac, opus frames).
SLACK_SECONDS = {"wav": 0, "pcm": 0, "flac": 0, "ogg": 0.01, "opus": 0.03, "mp3": 0.12, "aac": 0.12}


class Pipe(io.RawIOBase):
    """A sink that cannot seek and records how much had arrived after each write."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, data):
        self.data += data
        return len(data)


def _write_chunked(enc, audio, size=1600):
    for start in range(0, len(audio), size):
        enc.write(audio[start : start + size])
    enc.close()


def _ffmpeg_decode(data: bytes, fmt: str) -> np.ndarray:
    """Decode through a pipe, as a streaming client would."""
    demuxer = {"pcm": ["-f", "s16le", "-ar", str(RATE), "-ac", "1"], "aac": ["-f", "aac"]}.get(fmt, [])
    out = subprocess.run(
        ["ffmpeg", "-v", "error", *demuxer, "-i", "pipe:0", "-f", "f32le", "-ac", "1", "pipe:1"],
        input=data, capture_output=True, check=True,
    )  # fmt: skip
    return np.frombuffer(out.stdout, "<f4")


def _ffprobe(path) -> tuple[str, float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    codec, rate = out.stdout.strip().split(",")
    return codec, float(rate)


@pytest.mark.parametrize(
    "path, fmt",
    [("a.wav", "wav"), ("A.WAV", "wav"), ("a.pcm", "pcm"), ("a.raw", "pcm"), ("a.flac", "flac"),
     ("a.ogg", "ogg"), ("a.opus", "opus"), ("a.mp3", "mp3"), ("a.aac", "aac"), ("dir.x/b.mp3", "mp3")],
)  # fmt: skip
def test_format_from_path(path, fmt):
    assert format_from_path(path) == fmt


@pytest.mark.parametrize("path, shown", [("out.xyz", "'.xyz'"), ("out", "no extension")])
def test_format_from_path_unknown(path, shown):
    with pytest.raises(OutputError) as info:
        format_from_path(path)
    assert shown in info.value.message and ".wav" in info.value.message and ".mp3" in info.value.message


@pytest.mark.parametrize(
    "value, expected",
    [(0.0, 0), (1.0, 32767), (-1.0, -32767), (1.5, 32767), (-7.0, -32767), (0.5, 16384), (-0.5, -16384),
     (1 / 32767 * 0.49, 0), (1 / 32767 * 0.51, 1), (float("nan"), 0), (float("inf"), 32767)],
)  # fmt: skip
def test_float_to_int16_clips_and_rounds(value, expected):
    assert float_to_int16(np.array([value], np.float32))[0] == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_to_a_file(tmp_path, fmt):
    audio = chirp(1.0)
    path = tmp_path / f"out.{fmt}"
    with open(path, "wb") as sink:
        _write_chunked(open_encoder(fmt, sink), audio)
    expected_rate = 48000 if fmt == "opus" else RATE
    slack = SLACK_SECONDS[fmt]
    if fmt not in ("pcm", "aac"):
        decoded, rate = soundfile.read(path, dtype="float32")
        assert rate == expected_rate
        assert len(audio) * expected_rate / RATE <= len(decoded) <= (1.0 + slack) * expected_rate + 1
    if fmt in ("wav", "flac"):
        assert np.max(np.abs(decoded - audio)) <= 1 / 32767  # lossless up to s16 rounding
    sox = fmt != "aac" and have("sox")
    if sox and fmt == "pcm":
        raw = ["-t", "raw", "-r", str(RATE), "-e", "signed", "-b", "16", "-c", "1"]
        stat = subprocess.run(["sox", *raw, str(path), "-n", "stat"], capture_output=True, text=True)
        assert stat.returncode == 0 and f"Samples read: {len(audio):>17}" in stat.stderr, stat.stderr
    elif sox and fmt != "opus":  # Debian's sox 14.4 reads neither
        info = subprocess.run(["sox", "--info", str(path)], capture_output=True, text=True)
        assert info.returncode == 0, info.stderr
        assert f"Sample Rate    : {expected_rate}" in info.stdout
    if have("ffmpeg"):
        decoded = _ffmpeg_decode(path.read_bytes(), fmt)
        assert (1.0 - slack) * expected_rate <= len(decoded) <= (1.0 + slack + 0.03) * expected_rate, len(decoded)
        if fmt != "pcm":
            codec, rate = _ffprobe(path)
            assert rate == expected_rate
            assert codec == {"wav": "pcm_s16le", "ogg": "vorbis"}.get(fmt, fmt)


@needs_ffmpeg
@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_every_format_to_a_pipe(fmt):
    """A sink that cannot seek (stdout to a pipe, an HTTP response) still gets a decodable stream."""
    audio = chirp(1.0)
    sink = Pipe()
    _write_chunked(open_encoder(fmt, sink, seekable=None), audio)
    rate = 48000 if fmt == "opus" else RATE
    decoded = _ffmpeg_decode(bytes(sink.data), fmt)
    # ffmpeg's vorbis decoder drops the last partial block (~128 samples): hence the lower slack.
    assert (1.0 - SLACK_SECONDS[fmt]) * rate <= len(decoded) <= (1.0 + SLACK_SECONDS[fmt] + 0.06) * rate, len(decoded)


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_flow_before_close(fmt):
    """Streaming: the sink gets audio while generation is still going, not only at close()."""
    sink = Pipe()
    enc = open_encoder(fmt, sink)
    header = len(sink.data)
    audio = chirp(3.0)
    if fmt in ("wav", "pcm"):
        enc.write(audio[:320])  # 10 ms
        assert len(sink.data) == header + 640
    else:
        for start in range(0, len(audio), 3200):  # 3 s in 100 ms chunks
            enc.write(audio[start : start + 3200])
        if fmt == "aac":  # another process encodes; give it a moment
            import time

            time.sleep(0.5)
        assert len(sink.data) > header + 1000, (fmt, header, len(sink.data))
    enc.close()


def test_wav_header_sizes():
    audio = chirp(0.5)
    seekable = io.BytesIO()
    _write_chunked(open_encoder("wav", seekable), audio)
    data = seekable.getvalue()
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    assert data[36:40] == b"data" and struct.unpack("<I", data[40:44])[0] == len(audio) * 2
    pipe = Pipe()
    _write_chunked(open_encoder("wav", pipe), audio)
    assert bytes(pipe.data[4:8]) == b"\xff\xff\xff\xff" and bytes(pipe.data[40:44]) == b"\xff\xff\xff\xff"
    assert bytes(pipe.data[44:]) == data[44:]


def test_wav_to_a_seekable_file_not_at_offset_zero(tmp_path):
    path = tmp_path / "prefixed.bin"
    with open(path, "wb") as sink:
        sink.write(b"JUNK")
        _write_chunked(open_encoder("wav", sink), chirp(0.2))
    data = path.read_bytes()[4:]
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8


@needs_sox
@needs_ffmpeg
@pytest.mark.parametrize("sample_format", ["s16", "f32"])
def test_streamed_wav_accepted_through_a_pipe(tmp_path, sample_format):
    """WAV with 0xFFFFFFFF sizes, piped into sox and ffmpeg, and saved then read by soundfile."""
    audio = chirp(1.0)
    for tool in (["sox", "-t", "wav", "-", "-t", "f32", "-"], ["ffmpeg", "-v", "error", "-f", "wav", "-i", "-", "-f", "f32le", "-"]):
        process = subprocess.Popen(tool, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        enc = open_encoder("wav", process.stdin, sample_format=sample_format)
        assert enc._seekable is False
        out, err = [], None
        import threading

        reader = threading.Thread(target=lambda: out.append(process.stdout.read()))
        reader.start()
        _write_chunked(enc, audio)
        process.stdin.close()
        reader.join()
        assert process.wait() == 0, process.stderr.read()
        decoded = np.frombuffer(out[0], "<f4")
        assert len(decoded) == len(audio), tool[0]
        assert np.max(np.abs(decoded - audio)) < 2e-4
    pipe = Pipe()
    _write_chunked(open_encoder("wav", pipe, sample_format=sample_format), audio)
    (tmp_path / "s.wav").write_bytes(pipe.data)
    decoded, rate = soundfile.read(tmp_path / "s.wav", dtype="float32")
    assert rate == RATE and len(decoded) == len(audio)


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac", "ogg", "opus", "mp3"])
def test_interrupted_writer_leaves_a_valid_shorter_file(tmp_path, fmt):
    path = tmp_path / f"cut.{fmt}"
    audio = chirp(2.0)
    with pytest.raises(KeyboardInterrupt):
        with open(path, "wb") as sink, open_encoder(fmt, sink) as enc:
            enc.write(audio[: RATE // 2])
            raise KeyboardInterrupt
    if fmt == "pcm":
        assert path.stat().st_size == RATE // 2 * 2
        return
    decoded, rate = soundfile.read(path, dtype="float32")
    assert 0.5 * rate <= len(decoded) <= (0.5 + SLACK_SECONDS[fmt]) * rate + 1


def test_f32_wav_and_pcm_are_exact():
    audio = (chirp(0.3) * 1.5).astype(np.float32)  # f32 keeps overs: it is the lossless choice
    wav = encode(audio, "wav", sample_format="f32")
    decoded, _ = soundfile.read(io.BytesIO(wav), dtype="float32")
    np.testing.assert_array_equal(decoded, audio)
    pcm = encode(audio, "pcm", sample_format="f32")
    np.testing.assert_array_equal(np.frombuffer(pcm, "<f4"), audio)
    np.testing.assert_array_equal(np.frombuffer(encode(audio, "pcm"), "<i2"), float_to_int16(audio))


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_resampling_lengths_and_streaming(rate):
    audio = chirp(1.0)[: RATE - 13]
    one_shot = resample(audio, RATE, rate)
    stream = StreamResampler(RATE, rate)
    parts = [stream.process(audio[i : i + 999]) for i in range(0, len(audio), 999)] + [stream.flush()]
    streamed = np.concatenate(parts)
    expected = len(audio) * rate / RATE
    assert abs(len(one_shot) - expected) <= 1 and abs(len(streamed) - expected) <= 1
    np.testing.assert_allclose(streamed, one_shot, atol=1e-6)
    data = encode(audio, "wav", output_rate=rate)
    decoded, got_rate = soundfile.read(io.BytesIO(data), dtype="float32")
    assert got_rate == rate and abs(len(decoded) - expected) <= 1


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_compressed_output_rate(fmt):
    data = encode(chirp(0.5), fmt, output_rate=24000)
    assert soundfile.info(io.BytesIO(data)).samplerate == 24000


@pytest.mark.parametrize(
    "kwargs, error",
    [({"fmt": "opus", "output_rate": 22050}, InvalidParameterError),
     ({"fmt": "flac", "sample_format": "f32"}, InvalidParameterError),
     ({"fmt": "wav", "sample_format": "s24"}, InvalidParameterError),
     ({"fmt": "wav", "output_rate": 1000}, InvalidParameterError),
     ({"fmt": "m4b"}, OutputError)],
)  # fmt: skip
def test_bad_parameters(kwargs, error):
    fmt = kwargs.pop("fmt")
    with pytest.raises(error):
        open_encoder(fmt, io.BytesIO(), **kwargs)


def test_aac_without_ffmpeg_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(formats.shutil, "which", lambda name: None)
    with pytest.raises(OutputError, match="aac output needs ffmpeg"):
        open_encoder("aac", io.BytesIO())


@needs_ffmpeg
@pytest.mark.parametrize("fmt", COMPRESSED)
def test_ffmpeg_fallback_encoder(fmt):
    """The path taken when libsndfile lacks a codec (older distribution builds)."""
    sink = Pipe()
    rate = 48000 if fmt == "opus" else RATE
    _write_chunked(FfmpegEncoder(fmt, sink, input_rate=RATE, output_rate=rate), chirp(1.0))
    decoded = _ffmpeg_decode(bytes(sink.data), fmt)
    assert (1.0 - SLACK_SECONDS[fmt]) * rate <= len(decoded) <= (1.0 + SLACK_SECONDS[fmt] + 0.06) * rate


@needs_ffmpeg
@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_ffmpeg_fallback_declares_the_length_when_it_can_seek(fmt):
    """On a seekable sink ffmpeg writes the MP3 Xing/LAME frame and the FLAC total, as libsndfile does.

    What broke: ffmpeg always wrote to a pipe, so its files lacked their length even where the sink
    could take it (`stream: false` on a server whose libsndfile has no mp3).
    """
    audio = chirp(1.0)
    sink = io.BytesIO()
    _write_chunked(FfmpegEncoder(fmt, sink, input_rate=RATE, output_rate=RATE, seekable=True), audio)
    assert soundfile.info(io.BytesIO(sink.getvalue())).frames == len(audio)


def test_encoder_rejects_multichannel_and_writes_after_close():
    enc = open_encoder("wav", io.BytesIO())
    with pytest.raises(ValueError):
        enc.write(np.zeros((10, 2), np.float32))
    enc.write(np.zeros((10, 1), np.float32))  # (n, 1) is mono
    enc.close()
    enc.close()  # idempotent
    with pytest.raises(ValueError):
        enc.write(np.zeros(10, np.float32))
