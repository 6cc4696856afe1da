"""Compressed audio for `soprano play`: libsndfile where it can decode, else an ffmpeg subprocess.

WAV and raw PCM stream through `reader.py` from their first bytes. Anything else (FLAC, Ogg
Vorbis/Opus, MP3 on libsndfile >= 1.1, and through ffmpeg AAC, M4A and the rest) is read whole
first: libsndfile and ffmpeg's MP4 demuxer both seek, which a pipe cannot.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tempfile
from typing import BinaryIO, Callable, Iterator

import numpy as np

from soprano_cli.errors import InputTextError

log = logging.getLogger(__name__)

BLOCK_FRAMES = 4096  # frames per block handed to the player


AudioStream = tuple[int, int, Iterator[np.ndarray]]  # rate, channels, float32 blocks (frames, channels)


def decode_audio(data: bytes, read_wav: Callable[[BinaryIO], AudioStream]) -> AudioStream:
    """(rate, channels, float32 blocks of shape (frames, channels)) of a whole compressed file.

    `read_wav` reads the WAV that ffmpeg writes to a pipe (reader.py's streaming reader, passed
    in by reader.py, which calls this module: so neither imports the other back)."""
    opened = _open_soundfile(data)
    if opened is not None:
        return opened.samplerate, opened.channels, _soundfile_blocks(opened)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise InputTextError(f"cannot decode the input (it starts with {data[:4]!r}): libsndfile does not know "
                             "it and ffmpeg is not on PATH; install ffmpeg, or use --raw for headerless PCM")
    return _ffmpeg_decode(ffmpeg, data, read_wav)


def _open_soundfile(data: bytes):
    import soundfile

    try:
        return soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        log.debug("libsndfile cannot decode the input (%s); trying ffmpeg", error)
        return None


def _soundfile_blocks(opened) -> Iterator[np.ndarray]:
    with opened:
        while True:
            block = opened.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
            if not len(block):
                return
            yield block


def _ffmpeg_decode(ffmpeg: str, data: bytes, read_wav: Callable[[BinaryIO], AudioStream]) -> AudioStream:
    """ffmpeg decodes a temporary copy of the input to float32 WAV on a pipe, read as it comes."""
    source = tempfile.NamedTemporaryFile(prefix="soprano-play-", delete=False)
    try:
        source.write(data)
        source.close()
        errors = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-i", source.name,
             "-vn", "-c:a", "pcm_f32le", "-f", "wav", "pipe:1"],
            stdout=subprocess.PIPE, stderr=errors,
        )  # fmt: skip
    except BaseException:
        os.unlink(source.name)
        raise

    def failure() -> InputTextError:
        process.wait()
        errors.seek(0)
        lines = errors.read().decode(errors="replace").strip().splitlines()
        detail = lines[-1].replace(f"{source.name}: ", "") if lines else f"exit status {process.returncode}"
        return InputTextError(f"cannot decode the input (it starts with {data[:4]!r}): ffmpeg says: {detail}")

    def finish() -> None:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        errors.close()
        os.unlink(source.name)

    try:
        rate, channels, blocks = read_wav(process.stdout)
    except InputTextError:
        error = failure()
        finish()
        raise error from None

    def stream() -> Iterator[np.ndarray]:
        try:
            yield from blocks
            if process.wait() != 0:
                raise failure()
        finally:
            finish()

    return rate, channels, stream()
