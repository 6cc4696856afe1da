"""Encoders on a sink that fails: the first failure ends the encoder with one typed error (#23).

Regression: libsndfile's write callback swallowed the sink's exception, printed a traceback per
write (ogg, mp3, opus) or tripped soundfile's assertion (flac), and the encoder carried on.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from soprano_cli.audio.formats import SUPPORTED_FORMATS, open_encoder
from soprano_cli.errors import OutputError

SECOND = np.sin(np.linspace(0, 2000, 32000, dtype=np.float32)) * 0.5


def _feed(encoder) -> int:
    """Write up to 20 s, one second at a time; returns how many writes went through."""
    for done in range(20):
        encoder.write(SECOND)
    encoder.close()
    return 20


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_full_disk_raises_output_error_at_once(fmt, capfd):
    with open("/dev/full", "wb", buffering=0) as sink:
        with pytest.raises(OutputError, match=f"cannot write {fmt} audio to /dev/full: No space left on device"):
            _feed(open_encoder(fmt, sink))
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_closed_pipe_raises_broken_pipe_at_once(fmt, capfd):
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "wb", buffering=0) as sink:
        encoder = None
        with pytest.raises(BrokenPipeError):
            encoder = open_encoder(fmt, sink)
            _feed(encoder)
        if encoder is not None:
            encoder.close()  # a second close after the failure writes nothing and raises nothing
    assert capfd.readouterr().err == ""
