"""Streaming audio encoders: wav, pcm, flac, ogg, opus, mp3 (and aac through ffmpeg).

Every encoder takes float32 mono chunks as they are generated and pushes bytes to its sink
as soon as the codec allows, so `soprano synth | soprano play` and HTTP streaming start
before generation ends. `open_encoder` is the entry point; `encode` is the one-shot form.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np

from soprano_cli.audio.resample import StreamResampler, check_rate
from soprano_cli.errors import InvalidParameterError, OutputError
from soprano_cli.interrupts import deferred_signals
from soprano_cli.model_facts import SAMPLE_RATE

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS = ("wav", "pcm", "flac", "ogg", "opus", "mp3", "aac")
SAMPLE_FORMATS = ("s16", "f32")

EXTENSIONS = {
    ".wav": "wav",
    ".wave": "wav",
    ".pcm": "pcm",
    ".raw": "pcm",
    ".flac": "flac",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".opus": "opus",
    ".mp3": "mp3",
    ".aac": "aac",
}

# What the HTTP server sends as Content-Type for each format.
MEDIA_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",  # Opus in an Ogg container, as OpenAI's API returns it
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
}

# libsndfile (bundled with the soundfile wheels) covers these without any external tool.
_LIBSNDFILE = {
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}

# ffmpeg arguments after the input; aac has no libsndfile encoder, the others fall back here
# when the installed libsndfile lacks them (distribution builds older than 1.1).
_FFMPEG = {
    "aac": ["-c:a", "aac", "-b:a", "96k", "-f", "adts"],
    "mp3": ["-c:a", "libmp3lame", "-q:a", "4", "-f", "mp3"],
    "opus": ["-c:a", "libopus", "-b:a", "48k", "-page_duration", "100000", "-f", "ogg"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "4", "-page_duration", "100000", "-f", "ogg"],
    "flac": ["-c:a", "flac", "-f", "flac"],
}

# ffmpeg muxers that write the length into the header last, which needs an output they can seek:
# the mp3 Xing frame with its LAME tag (frame count, delay, padding) and flac's STREAMINFO total.
_FFMPEG_SEEKS = ("mp3", "flac")

# Opus only runs at these rates; 32 kHz input is resampled to 48 kHz unless asked otherwise.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)

_UNKNOWN_SIZE = 0xFFFFFFFF  # RIFF/data size of a WAV streamed before its length is known


def format_from_path(path: str | os.PathLike) -> str:
    """Return the output format named by a file's extension, or raise OutputError."""
    suffix = Path(path).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    known = " ".join(sorted(EXTENSIONS))
    shown = f"extension '{suffix}'" if suffix else "no extension"
    raise OutputError(f"cannot tell the audio format of {os.fspath(path)} ({shown}); use one of: {known}")


def check_format(fmt: str) -> str:
    """Return the normalized format name, or raise OutputError listing the supported ones."""
    name = fmt.lower().lstrip(".")
    name = {"raw": "pcm", "wave": "wav", "oga": "ogg"}.get(name, name)
    if name not in SUPPORTED_FORMATS:
        raise OutputError(f"unknown audio format '{fmt}'; supported: {', '.join(SUPPORTED_FORMATS)}")
    return name


def float_to_int16(audio: np.ndarray) -> np.ndarray:
    """Convert float samples in [-1, 1] to int16, clipping overs and rounding to nearest."""
    audio = np.nan_to_num(np.asarray(audio, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def _as_mono(chunk: np.ndarray) -> np.ndarray:
    chunk = np.asarray(chunk, dtype=np.float32)
    if chunk.ndim == 2 and chunk.shape[1] == 1:
        chunk = chunk[:, 0]
    if chunk.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,) or (n, 1), got {chunk.shape}")
    return chunk


def _is_seekable(sink: BinaryIO) -> bool:
    try:
        if not sink.seekable():
            return False
        sink.tell()
        return True
    except (AttributeError, OSError, ValueError):
        return False


def wav_header(sample_rate: int, sample_format: str = "s16", n_frames: int | None = None) -> bytes:
    """A mono WAV header; n_frames=None gives the 0xFFFFFFFF "unknown length" sizes of a stream.

    s16 is plain PCM (44 bytes). f32 is IEEE float, whose fmt chunk carries the cbSize field
    (18 bytes) that sox insists on for non-PCM encodings.
    """
    if sample_format == "s16":
        fmt_chunk = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
        width = 2
    else:
        fmt_chunk = struct.pack("<HHIIHHH", 3, 1, sample_rate, sample_rate * 4, 4, 32, 0)
        width = 4
    header_rest = 4 + 8 + len(fmt_chunk) + 8  # "WAVE", fmt chunk, data chunk header
    if n_frames is None:
        data_size = riff_size = _UNKNOWN_SIZE
    else:
        data_size = min(n_frames * width, _UNKNOWN_SIZE - header_rest)
        riff_size = data_size + header_rest
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
        + b"data" + struct.pack("<I", data_size)
    )  # fmt: skip


class Encoder:
    """Base of the streaming encoders: resampling, mono checks, close-once bookkeeping."""

    def __init__(self, fmt: str, sink: BinaryIO, *, input_rate: int, output_rate: int):
        self.format = fmt
        self.media_type = MEDIA_TYPES[fmt]
        self.sink = sink
        self.input_rate = input_rate
        self.sample_rate = output_rate  # the rate of the encoded audio
        self.frames_written = 0  # frames at the output rate handed to the codec
        self.closed = False
        self._resampler = StreamResampler(input_rate, output_rate)

    def write(self, chunk: np.ndarray) -> None:
        """Encode one float32 mono chunk in [-1, 1] (any length) and push its bytes to the sink.

        A sink that fails ends the encoder at once: a closed pipe raises BrokenPipeError (the
        CLI exits quietly, as for `| head`), anything else (a full disk, EIO) OutputError.
        """
        if self.closed:
            raise ValueError("write to a closed encoder")
        samples = self._resampler.process(_as_mono(chunk))
        if len(samples):
            with deferred_signals():  # Ctrl-C waits for the codec: it must not land inside it
                try:
                    self._encode(samples)
                except OSError as error:
                    self._fail(error)
                self.frames_written += len(samples)

    def close(self) -> None:
        """Flush the resampler and codec; the sink then holds a complete, playable file."""
        if self.closed:
            return
        self.closed = True
        with deferred_signals():  # a second Ctrl-C must not cut the file's end (a FLAC header) short
            try:
                tail = self._resampler.flush()
                if len(tail):
                    self._encode(tail)
                    self.frames_written += len(tail)
                self._finish()
            except OSError as error:
                self._fail(error)

    def _fail(self, error: OSError):
        """Give up on a failed sink: nothing more is written to it (also not on close)."""
        self.closed = True
        self._abandon(error)
        if isinstance(error, BrokenPipeError):
            raise error
        name = getattr(self.sink, "name", None)
        where = os.fspath(name) if isinstance(name, (str, os.PathLike)) else "the output"
        raise OutputError(f"cannot write {self.format} audio to {where}: {error.strerror or error}") from None

    def _abandon(self, error: OSError) -> None:
        """Release the codec after the sink failed with `error`, writing nothing more."""

    def _encode(self, samples: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc_info) -> None:
        # Also on KeyboardInterrupt: what was written so far becomes a valid, shorter file.
        self.close()


def _flush(sink: BinaryIO) -> None:
    flush = getattr(sink, "flush", None)
    if flush is not None:
        flush()


class PcmEncoder(Encoder):
    """Headerless little-endian samples, s16 or f32."""

    def __init__(self, sink: BinaryIO, *, input_rate: int, output_rate: int, sample_format: str):
        super().__init__("pcm", sink, input_rate=input_rate, output_rate=output_rate)
        self.sample_format = sample_format

    def _to_bytes(self, samples: np.ndarray) -> bytes:
        if self.sample_format == "s16":
            return float_to_int16(samples).astype("<i2").tobytes()
        return np.nan_to_num(samples).astype("<f4").tobytes()

    def _encode(self, samples: np.ndarray) -> None:
        self.sink.write(self._to_bytes(samples))
        _flush(self.sink)  # streaming: the reader hears each chunk now, not at the end

    def _finish(self) -> None:
        _flush(self.sink)


class WavEncoder(PcmEncoder):
    """WAV written as it goes: header first, sizes patched on close when the sink can seek."""

    def __init__(self, sink, *, input_rate, output_rate, sample_format, seekable):
        super().__init__(sink, input_rate=input_rate, output_rate=output_rate, sample_format=sample_format)
        self.format = "wav"
        self.media_type = MEDIA_TYPES["wav"]
        self._seekable = _is_seekable(sink) if seekable is None else seekable
        self._start = sink.tell() if self._seekable else 0
        # Written up front so that an interrupted or empty stream is still a valid file.
        try:
            sink.write(wav_header(output_rate, sample_format, 0 if self._seekable else None))
            _flush(sink)
        except OSError as error:
            self._fail(error)

    def _finish(self) -> None:
        if self._seekable:
            end = self.sink.tell()
            self.sink.seek(self._start)
            self.sink.write(wav_header(self.sample_rate, self.sample_format, self.frames_written))
            self.sink.seek(end)
        _flush(self.sink)


class _SinkAdapter(io.RawIOBase):
    """A file-like view of any sink for libsndfile, which insists on seek/tell.

    Writes at the end go straight to the sink. On a sink that cannot seek, libsndfile's
    attempts to go back and rewrite a header on close (FLAC STREAMINFO, the MP3 LAME tag) are
    accepted and dropped: the stream then simply lacks the total length, as any streamed
    FLAC/MP3 does.
    """

    def __init__(self, sink: BinaryIO, seekable: bool):
        self._sink = sink
        self._can_seek = seekable
        self._base = sink.tell() if seekable else 0
        self._pos = 0  # libsndfile's idea of the position, relative to _base
        self._end = 0  # bytes emitted so far
        # The sink's first failure. An exception cannot cross libsndfile's C callback (soundfile
        # printed one traceback per write and the codec went on), so it is kept here, later
        # writes are dropped, and the encoder raises it after the call into libsndfile returns.
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end}[whence]
        self._pos = max(0, base + offset)
        if self._can_seek:
            self._sink.seek(self._base + self._pos)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        return b""  # write-only: libsndfile probes, finds nothing and carries on

    def readinto(self, buffer) -> int:
        return 0

    def write(self, data) -> int:
        data = bytes(data)
        if self.error is not None:
            pass
        elif self._pos == self._end or self._can_seek:
            try:
                self._sink.write(data)
            except OSError as error:
                self.error = error
        else:
            logger.debug("dropping a %d-byte header rewrite on a sink that cannot seek", len(data))
        self._pos += len(data)
        self._end = max(self._end, self._pos)
        return len(data)

    def flush(self) -> None:
        if self.error is None:
            _flush(self._sink)

    def raise_error(self) -> None:
        """Raise the sink's failure, if any, in the writer's thread."""
        if self.error is not None:
            raise self.error


class SoundFileEncoder(Encoder):
    """flac/ogg/opus/mp3 through libsndfile, writing into the sink as the codec emits frames."""

    def __init__(self, fmt, sink, *, input_rate, output_rate, seekable):
        import soundfile

        super().__init__(fmt, sink, input_rate=input_rate, output_rate=output_rate)
        container, subtype = _LIBSNDFILE[fmt]
        self._adapter = _SinkAdapter(sink, _is_seekable(sink) if seekable is None else seekable)
        try:
            self._file = soundfile.SoundFile(
                self._adapter, "w", samplerate=output_rate, channels=1, format=container, subtype=subtype
            )
        except (soundfile.LibsndfileError, ValueError) as error:
            raise OutputError(f"cannot write {fmt} at {output_rate} Hz: {error}") from error

    def _encode(self, samples: np.ndarray) -> None:
        self._file.write(np.clip(samples, -1.0, 1.0))
        self._adapter.raise_error()
        _flush(self.sink)

    def _finish(self) -> None:
        self._file.close()
        self._adapter.raise_error()
        _flush(self.sink)

    def _abandon(self, error: OSError) -> None:
        self._adapter.error = self._adapter.error or error  # what libsndfile still writes is dropped
        self._file.close()


class FfmpegEncoder(Encoder):
    """Any format through an `ffmpeg` subprocess: f32le in on stdin, encoded bytes out on stdout.

    For a seekable sink, mp3 and flac go to a temporary file instead, where ffmpeg can go back
    and write their lengths; it is copied into the sink on close.
    """

    def __init__(self, fmt, sink, *, input_rate, output_rate, seekable=False):
        super().__init__(fmt, sink, input_rate=input_rate, output_rate=output_rate)
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise OutputError(f"{fmt} output needs ffmpeg, which is not on PATH; install it or use wav, flac, ogg or mp3")
        self._file = tempfile.NamedTemporaryFile(suffix=f".{fmt}") if seekable and fmt in _FFMPEG_SEEKS else None
        command = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "f32le", "-ar", str(output_rate), "-ac", "1", "-i", "pipe:0",
            *_FFMPEG[fmt], "-flush_packets", "1", self._file.name if self._file else "pipe:1",
        ]  # fmt: skip
        self._errors = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL if self._file else subprocess.PIPE,
            stderr=self._errors, bufsize=0,
            start_new_session=True,  # a terminal's Ctrl-C is ours to handle: ffmpeg must live to finish the file
        )
        self._pump_error: BaseException | None = None
        # The pump copies ffmpeg's output to the sink while we keep feeding its input.
        self._pump = None if self._file else threading.Thread(target=self._copy_output, name=f"ffmpeg-{fmt}",
                                                               daemon=True)
        if self._pump is not None:
            self._pump.start()

    def _copy_output(self) -> None:
        try:
            while data := self._process.stdout.read(65536):
                self.sink.write(data)
                _flush(self.sink)
        except BaseException as error:  # re-raised in the writer's thread by _finish
            self._pump_error = error
            self._process.kill()

    def _encode(self, samples: np.ndarray) -> None:
        try:
            self._process.stdin.write(np.clip(samples, -1.0, 1.0).astype("<f4").tobytes())
        except BrokenPipeError:
            self._finish()  # raises with ffmpeg's own message

    def _finish(self) -> None:
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        self._process.wait()
        if self._pump is not None:
            self._pump.join()
        if self._pump_error is not None:
            raise self._pump_error
        if self._process.returncode != 0:
            self._release()
            self._errors.seek(0)
            lines = self._errors.read().decode(errors="replace").strip().splitlines()
            detail = lines[-1] if lines else f"exit status {self._process.returncode}"
            raise OutputError(f"ffmpeg could not encode {self.format}: {detail}")
        self._errors.close()
        if self._file is not None:
            with open(self._file.name, "rb") as encoded:
                shutil.copyfileobj(encoded, self.sink)
            self._release()
        _flush(self.sink)

    def _abandon(self, error: OSError) -> None:
        self._process.kill()
        self._process.wait()
        self._release()

    def _release(self) -> None:
        if self._file is not None:
            self._file.close()  # deletes it


def ffmpeg_formats() -> tuple[str, ...]:
    """The formats this machine encodes through ffmpeg: aac always, others where libsndfile lacks them."""
    return tuple(fmt for fmt in _FFMPEG if fmt not in _LIBSNDFILE or not _libsndfile_has(fmt))


def _libsndfile_has(fmt: str) -> bool:
    import soundfile

    container, subtype = _LIBSNDFILE[fmt]
    return container in soundfile.available_formats() and subtype in soundfile.available_subtypes(container)


def open_encoder(
    fmt: str,
    sink: BinaryIO,
    *,
    input_rate: int = SAMPLE_RATE,
    output_rate: int | None = None,
    sample_format: str = "s16",
    seekable: bool | None = None,
) -> Encoder:
    """Start a streaming encoder writing `fmt` to `sink`; feed it with write(), finish with close().

    input_rate is the rate of the chunks given to write(); output_rate (default: the input
    rate, 48 kHz for opus) resamples through soxr. sample_format ("s16" or "f32") applies to
    wav and pcm. seekable=None asks the sink; a seekable WAV gets its real sizes on close.
    """
    fmt = check_format(fmt)
    input_rate = check_rate(input_rate, param="input_rate")
    if sample_format not in SAMPLE_FORMATS:
        raise InvalidParameterError(
            f"unknown sample format '{sample_format}'; use s16 or f32", param="sample_format"
        )
    if sample_format != "s16" and fmt not in ("wav", "pcm"):
        raise InvalidParameterError(
            f"sample format {sample_format} is only available for wav and pcm, not {fmt}", param="sample_format"
        )
    if output_rate is None:
        output_rate = 48000 if fmt == "opus" else input_rate
    output_rate = check_rate(output_rate)
    if fmt == "opus" and output_rate not in _OPUS_RATES:
        raise InvalidParameterError(
            f"opus supports only {', '.join(map(str, _OPUS_RATES))} Hz, not {output_rate}", param="sample_rate"
        )
    with deferred_signals():  # libsndfile writes a header through its callback already
        return _new_encoder(fmt, sink, input_rate, output_rate, sample_format, seekable)


def _new_encoder(fmt, sink, input_rate, output_rate, sample_format, seekable) -> Encoder:
    if fmt == "wav":
        return WavEncoder(
            sink, input_rate=input_rate, output_rate=output_rate, sample_format=sample_format, seekable=seekable
        )
    if fmt == "pcm":
        return PcmEncoder(sink, input_rate=input_rate, output_rate=output_rate, sample_format=sample_format)
    if fmt in _LIBSNDFILE and _libsndfile_has(fmt):
        return SoundFileEncoder(fmt, sink, input_rate=input_rate, output_rate=output_rate, seekable=seekable)
    return FfmpegEncoder(fmt, sink, input_rate=input_rate, output_rate=output_rate,
                         seekable=_is_seekable(sink) if seekable is None else seekable)


def encode(
    audio: np.ndarray,
    fmt: str,
    *,
    input_rate: int = SAMPLE_RATE,
    output_rate: int | None = None,
    sample_format: str = "s16",
) -> bytes:
    """Encode a whole float32 mono signal and return the file's bytes."""
    sink = io.BytesIO()
    with open_encoder(fmt, sink, input_rate=input_rate, output_rate=output_rate, sample_format=sample_format) as enc:
        enc.write(audio)
    return sink.getvalue()
