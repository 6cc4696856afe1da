"""SRT and WebVTT captions: timestamp formats, headers, numbering, escaping."""

from __future__ import annotations

import io

import pytest

from soprano_cli.audio.captions import (
    captions_format_from_path,
    format_captions,
    format_timestamp,
    write_captions,
)
from soprano_cli.errors import OutputError

CUES = [(0.0, 1.2344, "Hello there."), (1.5, 3725.0016, "Second <b>line</b> & more\n\nwith a break")]


@pytest.mark.parametrize(
    "seconds, srt, vtt",
    [(0, "00:00:00,000", "00:00:00.000"), (1.234, "00:00:01,234", "00:00:01.234"),
     (1.2345, "00:00:01,234", "00:00:01.234"), (59.9996, "00:01:00,000", "00:01:00.000"),
     (3725.5, "01:02:05,500", "01:02:05.500"), (-0.2, "00:00:00,000", "00:00:00.000")],
)  # fmt: skip
def test_timestamps(seconds, srt, vtt):
    assert format_timestamp(seconds, "srt") == srt
    assert format_timestamp(seconds, "vtt") == vtt


def test_srt():
    assert format_captions(CUES, "srt") == (
        "1\n00:00:00,000 --> 00:00:01,234\nHello there.\n\n"
        "2\n00:00:01,500 --> 01:02:05,002\nSecond <b>line</b> & more\nwith a break\n"
    )


def test_vtt():
    assert format_captions(CUES, "vtt") == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.234\nHello there.\n\n"
        "00:00:01.500 --> 01:02:05.002\nSecond &lt;b&gt;line&lt;/b&gt; &amp; more\nwith a break\n"
    )


def test_empty_cues_are_skipped_and_end_never_precedes_start():
    text = format_captions([(1.0, 2.0, "  "), (3.0, 2.5, "x")], "srt")
    assert text == "1\n00:00:03,000 --> 00:00:03,000\nx\n"
    assert format_captions([], "vtt") == "WEBVTT\n"


@pytest.mark.parametrize("path, fmt", [("a.srt", "srt"), ("a.VTT", "vtt")])
def test_format_from_path(path, fmt):
    assert captions_format_from_path(path) == fmt


def test_unknown_extension():
    with pytest.raises(OutputError, match=r"'\.txt'.*\.srt or \.vtt"):
        captions_format_from_path("a.txt")


def test_write_to_path_and_stream(tmp_path):
    write_captions(tmp_path / "c.vtt", CUES)
    assert (tmp_path / "c.vtt").read_text().startswith("WEBVTT\n\n00:00:00.000")
    buffer = io.StringIO()
    write_captions(buffer, CUES, "srt")
    assert buffer.getvalue().startswith("1\n00:00:00,000")
    with pytest.raises(OutputError):
        write_captions(tmp_path / "missing" / "c.srt", CUES)
