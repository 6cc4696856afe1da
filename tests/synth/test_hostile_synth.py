"""`soprano synth` on input with nothing to say and on outputs it cannot write (#23)."""

from __future__ import annotations

import pytest

from soprano_cli.errors import EXIT_INPUT, EXIT_OUTPUT

LONG_TEXT = "This sentence takes the tiny model a while. " * 40


# Regression: emoji-only or NUL-only text was spoken from an empty prompt (exit 0, 0.6 s of audio).
@pytest.mark.parametrize("args,stdin", [(("😀😀😀",), b""), ((), "🎉 ✨\n🎉\n".encode()), ((), b"\x00\x00\n")],
                         ids=["emoji argument", "emoji stdin", "NUL stdin"])
def test_nothing_speakable_is_empty_input(synth, tmp_path, args, stdin):
    out = tmp_path / "out.wav"
    result = synth(*args, "-o", out, input=stdin)
    assert result.returncode == EXIT_INPUT, result.stderr
    assert result.stderr.decode().strip() == "soprano: error: no text to synthesize: the input is empty"
    assert not out.exists()


# Regression: an unwritable --captions path was found only after the whole synthesis.
@pytest.mark.parametrize("captions", ["missing/dir/subs.srt", "a_directory.srt"])
def test_unwritable_captions_fail_before_synthesis(synth, tmp_path, captions):
    (tmp_path / "a_directory.srt").mkdir()
    out = tmp_path / "out.wav"
    result = synth(LONG_TEXT, "-o", out, "--captions", tmp_path / captions)
    assert result.returncode == EXIT_OUTPUT, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert lines == [f"soprano: error: cannot write {tmp_path / captions}: " + lines[0].rsplit(": ", 1)[1]]
    assert not out.exists()  # failed before the model loaded and the audio file was opened


def test_output_check_leaves_no_file_behind_on_a_later_error(synth, tmp_path):
    out = tmp_path / "out.wav"
    result = synth("", "-o", out)
    assert result.returncode == EXIT_INPUT
    assert not out.exists()
