"""Captions for synthesized speech: sentence cues as audio is written, SubRip (.srt) and WebVTT (.vtt) files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, TextIO

from soprano_cli.errors import OutputError

CAPTION_FORMATS = ("srt", "vtt")

Cue = tuple[float, float, str]  # (start seconds, end seconds, text)


class CueClock:
    """Sentence cues of audio as it is written, in order: a cue runs from its sentence's first
    sample to its last, so it is exact to the sample (the model's frames, not an estimate)."""

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.samples = 0  # written so far
        self._start: int | None = None  # the current sentence's first sample

    def skip(self, samples: int) -> None:
        """Count `samples` of silence between sentences: written, but in no sentence's cue."""
        self.samples += samples

    def write(self, samples: int, *, final: bool = False, text: str = "") -> Cue | None:
        """Count `samples` more of the current sentence; at its `final` chunk, return its cue."""
        if self._start is None and samples:
            self._start = self.samples
        self.samples += samples
        if not final or self._start is None:
            return None
        cue, self._start = (self._start / self.sample_rate, self.samples / self.sample_rate, text), None
        return cue


def captions_format_from_path(path: str | os.PathLike) -> str:
    """'srt' or 'vtt' from a file's extension, or OutputError."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in CAPTION_FORMATS:
        return suffix
    shown = f"extension '.{suffix}'" if suffix else "no extension"
    raise OutputError(f"cannot tell the caption format of {os.fspath(path)} ({shown}); use .srt or .vtt")


def format_timestamp(seconds: float, fmt: str = "srt") -> str:
    """HH:MM:SS,mmm for SRT, HH:MM:SS.mmm for WebVTT (rounded to the millisecond)."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    sep = "," if fmt == "srt" else "."
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def _clean(text: str, fmt: str) -> str:
    # A blank line ends a cue in both formats, so the text keeps only non-empty lines.
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    text = "\n".join(lines)
    if fmt == "vtt":
        # WebVTT cue text is markup: & and < must be escaped, and "-->" may not appear.
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def format_captions(cues: Iterable[Cue], fmt: str) -> str:
    """The whole caption file as text; cues are numbered from 1 in SRT."""
    if fmt not in CAPTION_FORMATS:
        raise OutputError(f"unknown caption format '{fmt}'; use srt or vtt")
    parts = ["WEBVTT\n"] if fmt == "vtt" else []
    number = 0
    for start, end, text in cues:
        text = _clean(text, fmt)
        if not text:
            continue
        number += 1
        end = max(end, start)
        timing = f"{format_timestamp(start, fmt)} --> {format_timestamp(end, fmt)}"
        parts.append(f"{number}\n{timing}\n{text}\n" if fmt == "srt" else f"{timing}\n{text}\n")
    return "\n".join(parts)


def write_captions(target: str | os.PathLike | TextIO, cues: Iterable[Cue], fmt: str | None = None) -> None:
    """Write cues to a path (format from its extension unless given) or to an open text file."""
    if isinstance(target, (str, os.PathLike)):
        fmt = fmt or captions_format_from_path(target)
        text = format_captions(cues, fmt)
        try:
            Path(target).write_text(text, encoding="utf-8")
        except OSError as error:
            raise OutputError(f"cannot write {os.fspath(target)}: {error.strerror or error}") from error
        return
    target.write(format_captions(cues, fmt or "srt"))
