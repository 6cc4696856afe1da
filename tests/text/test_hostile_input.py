"""Hostile text: numbers past Python's int/str limit, control characters, nothing speakable (#23)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from soprano_cli.text import normalize
from soprano_cli.text.pipeline import sentences_from_text

SOPRANO = [sys.executable, "-m", "soprano_cli"]
LONG = "7" * 5000  # past the 4,300 digits int() and str() convert

# Regression: each of these raised ValueError (Exceeds the limit (4300 digits)...) out of int().
LONG_NUMBER_CASES = [
    LONG, f"${LONG}", f"${LONG}.50", f"{LONG}th", f"1/{LONG}", f"{LONG}/3", f"1 {LONG}/2", f"{LONG}%",
    f"{LONG}.{LONG}", f"-{LONG}", f"{LONG} km", f"{LONG}-{LONG}", f"#{LONG}", f"{LONG}x", f"{LONG}¢",
    f"1,000,{LONG}", "1," * 3000 + "000",
]


@pytest.mark.parametrize("text", LONG_NUMBER_CASES, ids=lambda text: text[:6] + "…" + text[-4:])
def test_numbers_past_the_int_limit_are_read_digit_by_digit(text):
    said = normalize(text)
    assert not any(ch.isdigit() for ch in said)
    assert said.count("seven") >= 5000 or text.startswith("1,")


def test_long_numbers_through_the_cli():
    done = subprocess.run(SOPRANO + ["normalize"], input=f"Pay ${LONG} now.\n{LONG}th\n".encode(),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stderr == b""
    first, second = done.stdout.decode().splitlines()
    assert first.startswith("Pay seven seven") and first.endswith("seven dollars now.")
    assert second.count("seven") == 5000 and second.endswith("seventh")


def test_named_numbers_are_unchanged():
    assert normalize("999,999,999,999,999,999,999,999,999,999,999,999").startswith("nine hundred ninety nine decillion")
    assert normalize("1" + "0" * 36) == "one " + " ".join(["zero"] * 36)  # past decillion: digit by digit


# Regression: on all-ASCII lines NUL, BEL, ESC and DEL went through to the output.
@pytest.mark.parametrize("text, said", [
    ("a\x00b", "a b"), ("ring\x07 bell", "ring bell"), ("\x1bescape", "escape"), ("del\x7f", "del"),
    ("tab\there", "tab here"), ("caf\xe9\x00x", "caf\xe9 x"),
])
def test_control_characters_are_spaces(text, said):
    assert normalize(text) == said


# Regression: emoji-only or NUL-only text was synthesized from an empty prompt (0.6 s of noise).
@pytest.mark.parametrize("text", ["😀😀😀", "\x00\x00", "🎉 ✨ 🎉", "... !!!"])
def test_nothing_speakable_gives_no_sentences(text):
    assert sentences_from_text(text) == []
    assert sentences_from_text(text, lines_are_chunks=True) == []


def test_speakable_sentences_keep_their_emoji():
    assert sentences_from_text("Hi 😀. Ok.") == ["Hi 😀. Ok."]
