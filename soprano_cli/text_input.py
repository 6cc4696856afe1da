"""Input text for the text commands: files or stdin, line by line, strict UTF-8."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from soprano_cli.errors import InputTextError

_BOM = b"\xef\xbb\xbf"


def _decode_lines(stream: BinaryIO, name: str) -> Iterator[str]:
    offset = 0
    number = 0
    # readline, not iteration or read(): a line is yielded as soon as it arrives on a pipe.
    for raw in iter(stream.readline, b""):
        number += 1
        data = raw[len(_BOM):] if number == 1 and raw.startswith(_BOM) else raw
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as error:
            position = offset + (len(raw) - len(data)) + error.start
            raise InputTextError(
                f"{name}: invalid UTF-8 at line {number}, byte offset {position} "
                f"(byte 0x{data[error.start]:02x})"
            ) from None
        offset += len(raw)
        yield line.rstrip("\n").removesuffix("\r")


def iter_input_lines(paths: list[Path]) -> Iterator[str]:
    """Lines (without line endings) of the named files in order, or of stdin when none or '-'."""
    for path in paths or [Path("-")]:
        if str(path) == "-":
            yield from _decode_lines(sys.stdin.buffer, "stdin")
            continue
        try:
            stream = open(path, "rb")
        except OSError as error:
            raise InputTextError(f"cannot read {path}: {error.strerror or error}") from None
        with stream:
            try:
                yield from _decode_lines(stream, str(path))
            except IsADirectoryError:
                raise InputTextError(f"cannot read {path}: it is a directory") from None
