"""Read WAV or raw PCM from a stream incrementally, yielding float32 blocks as bytes arrive.

The RIFF header is parsed here rather than by libsndfile so that nothing ever seeks or waits
for the whole input: a WAV streamed by `soprano synth` (sizes 0xFFFFFFFF), one with zero
sizes, or a truncated file all play from their first bytes. Input that is not WAV goes to
`decoding.py` (libsndfile, then ffmpeg).
"""

from __future__ import annotations

import logging
import struct
from typing import BinaryIO, Iterator

import numpy as np

from soprano_cli.errors import InputTextError, InvalidParameterError
from soprano_cli.model_facts import SAMPLE_RATE

logger = logging.getLogger(__name__)

READ_SIZE = 16384  # upper bound per read; a pipe returns whatever is there, sooner
MAX_CHANNELS = 32
MIN_WAV_RATE, MAX_WAV_RATE = 1000, 384000  # the range `soprano play --rate` accepts
RAW_SAMPLE_FORMATS = ("s16", "f32")

_TAG_PCM, _TAG_FLOAT, _TAG_EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # "read to the end": streamed or never patched


class _ByteSource:
    """Pulls bytes with read1 (one OS read, returns as soon as anything is available)."""

    def __init__(self, stream: BinaryIO):
        self._read = getattr(stream, "read1", None) or stream.read
        self.pending = bytearray()  # bytes read but not yet consumed
        self.eof = False

    def fill(self) -> bool:
        """Read once more; False at end of input."""
        if self.eof:
            return False
        data = self._read(READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.pending += data
        return True

    def take(self, n: int) -> bytes | None:
        """Exactly n bytes, reading as needed; None if the input ends first."""
        while len(self.pending) < n:
            if not self.fill():
                return None
        data = bytes(self.pending[:n])
        del self.pending[:n]
        return data

    def skip(self, n: int) -> bool:
        while n > 0:
            if not self.pending and not self.fill():
                return False
            step = min(n, len(self.pending))
            del self.pending[:step]
            n -= step
        return True


class _Decoder:
    """Turns whole frames of one sample encoding into float32 (frames, channels)."""

    def __init__(self, encoding: str, channels: int):
        self.encoding = encoding  # one of u8 s16 s24 s32 f32 f64
        self.channels = channels
        self.frame_bytes = channels * {"u8": 1, "s16": 2, "s24": 3, "s32": 4, "f32": 4, "f64": 8}[encoding]

    def __call__(self, data: bytes) -> np.ndarray:
        enc = self.encoding
        if enc == "u8":
            samples = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
        elif enc == "s16":
            samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        elif enc == "s24":
            raw = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
            ints = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
            ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
            samples = ints.astype(np.float32) / float(1 << 23)
        elif enc == "s32":
            samples = (np.frombuffer(data, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
        elif enc == "f32":
            samples = np.frombuffer(data, "<f4").astype(np.float32)
        else:
            samples = np.frombuffer(data, "<f8").astype(np.float32)
        return samples.reshape(-1, self.channels)  # (frames, channels)


def _wav_encoding(tag: int, bits: int, fmt_body: bytes) -> str:
    if tag == _TAG_EXTENSIBLE and len(fmt_body) >= 26:
        tag = struct.unpack_from("<H", fmt_body, 24)[0]  # first two bytes of the SubFormat GUID
    if tag == _TAG_PCM and bits in (8, 16, 24, 32):
        return {8: "u8", 16: "s16", 24: "s24", 32: "s32"}[bits]
    if tag == _TAG_FLOAT and bits in (32, 64):
        return {32: "f32", 64: "f64"}[bits]
    raise InputTextError(f"unsupported WAV encoding (format tag 0x{tag:04x}, {bits} bits); use PCM or float")


def _parse_wav_header(source: _ByteSource) -> tuple[int, _Decoder, int | None]:
    """Consume the header up to the data chunk: (rate, decoder, data bytes or None for "to EOF")."""
    riff = source.take(12)
    if riff is None or riff[:4] not in (b"RIFF", b"RF64") or riff[8:12] != b"WAVE":
        head = bytes(source.pending[:4]) if riff is None else riff[:4]
        if riff is None and not head:
            raise InputTextError("no audio on input (it is empty)")
        raise InputTextError(f"input is not a WAV file (it starts with {head!r}); use --raw for headerless PCM")
    rf64_data_size = None
    fmt = None
    while True:
        chunk = source.take(8)
        if chunk is None:
            raise InputTextError("truncated WAV header: no data chunk")
        chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"data":
            break
        if chunk_id in (b"fmt ", b"ds64"):
            body = source.take(size + (size & 1))  # chunks are padded to even sizes
            if body is None:
                raise InputTextError(f"truncated WAV header in the {chunk_id.decode().strip()} chunk")
            if chunk_id == b"ds64" and size >= 16:
                rf64_data_size = struct.unpack_from("<Q", body, 8)[0]
            elif chunk_id == b"fmt ":
                if size < 16:
                    raise InputTextError("malformed WAV header: fmt chunk too short")
                fmt = body
        elif not source.skip(size + (size & 1)):
            raise InputTextError("truncated WAV header: no data chunk")
    if fmt is None:
        raise InputTextError("malformed WAV header: no fmt chunk before the data")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    # Rates outside what `play --rate` accepts are header damage, not audio (1 Hz and 4294967295 Hz
    # used to reach the sound device).
    if not 1 <= channels <= MAX_CHANNELS or not MIN_WAV_RATE <= rate <= MAX_WAV_RATE:
        raise InputTextError(f"malformed WAV header: {channels} channels at {rate} Hz "
                             f"(expected 1..{MAX_CHANNELS} channels at {MIN_WAV_RATE}..{MAX_WAV_RATE} Hz)")
    decoder = _Decoder(_wav_encoding(tag, bits, fmt), channels)
    if riff[:4] == b"RF64" and size == 0xFFFFFFFF:
        size = rf64_data_size if rf64_data_size else 0
    return rate, decoder, None if size in _UNKNOWN_SIZES else size


def _blocks(source: _ByteSource, decoder: _Decoder, remaining: int | None) -> Iterator[np.ndarray]:
    frame = decoder.frame_bytes
    while True:
        if len(source.pending) < frame and not source.fill():
            break
        usable = len(source.pending) - len(source.pending) % frame
        if remaining is not None:
            usable = min(usable, remaining - remaining % frame)
        if usable:
            data = bytes(source.pending[:usable])
            del source.pending[:usable]
            yield decoder(data)
        if remaining is not None:
            remaining -= usable
            if remaining < frame:
                return  # the data chunk ends here; trailing chunks (LIST...) are not audio
    if source.pending:
        logger.debug("ignoring %d trailing bytes (less than one frame)", len(source.pending))


def read_audio_stream(
    stream: BinaryIO,
    *,
    raw: bool = False,
    rate: int = SAMPLE_RATE,
    sample_format: str = "s16",
    channels: int = 1,
) -> tuple[int, int, Iterator[np.ndarray]]:
    """Open audio on `stream`: (rate, channels, float32 blocks of shape (frames, channels)).

    WAV (or, with raw=True, headerless PCM) streams: the header is read before returning, and
    blocks follow as soon as whole frames arrive; a partial frame at the end is dropped. Any other
    input is read to its end and decoded by libsndfile or ffmpeg (`decoding.py`). rate,
    sample_format ("s16"/"f32") and channels describe raw input only.
    """
    source = _ByteSource(stream)
    if raw:
        if sample_format not in RAW_SAMPLE_FORMATS:
            raise InvalidParameterError(f"unknown sample format '{sample_format}'; use s16 or f32")
        if not 1 <= channels <= MAX_CHANNELS:
            raise InvalidParameterError(f"channels must be 1..{MAX_CHANNELS}, not {channels}")
        if rate <= 0:
            raise InvalidParameterError(f"sample rate must be positive, not {rate}")
        decoder = _Decoder(sample_format, channels)
        return rate, channels, _blocks(source, decoder, None)
    if not _looks_like_wav(source):
        from soprano_cli.audio.decoding import decode_audio

        while source.fill():  # compressed formats are decoded from the whole input
            pass
        return decode_audio(bytes(source.pending), read_audio_stream)
    rate, decoder, data_size = _parse_wav_header(source)
    return rate, decoder.channels, _blocks(source, decoder, data_size)


def _looks_like_wav(source: _ByteSource) -> bool:
    """Whether the input starts like a RIFF/RF64 WAV (or is too short or empty to be anything else)."""
    while len(source.pending) < 4 and source.fill():
        pass
    return len(source.pending) < 4 or bytes(source.pending[:4]) in (b"RIFF", b"RF64")
