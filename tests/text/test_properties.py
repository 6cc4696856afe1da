"""Property tests over arbitrary Unicode: no exception, idempotent, model charset, nothing lost."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from soprano_cli.text import ALLOWED_MODEL_CHARS, incremental_split, model_text, normalize, split, split_sentences

# Arbitrary Unicode, plus text built from the pieces the rules look for, so that the
# rules themselves (not only the Unicode cleanup) are exercised on odd combinations.
PIECES = st.sampled_from(
    ["5", "1,000", "3.14", "-", "–", "—", "/", "$", "€", "%", ":", "30", "p.m.", "a.m.", "Dr.", "St.", "Mr", "U.S.",
     "e.g.", "II", "XIV", "War", "Louis", "FBI", "NASA", "1999", "'90s", "1980s", "km", "°C", "^", "2", "x", "=", "+",
     "*", "<", ">", "&", "@", "#", ".", ",", "!", "?", "...", "…", "“", "”", "‘", "’", "'", '"', "(", ")", " ", "\n",
     "\n\n", "http://", "www.", ".com", "a", "The", "January", "Jan", "5th", "1/2", "½", "²", "\u0301", "\u200d",
     "١٢", "ß", "ﬁ", "K", "M", "bn", "cents", "ft", "lbs"]
)
TEXT = st.one_of(st.text(), st.lists(PIECES, max_size=25).map("".join), st.lists(st.one_of(PIECES, st.text(max_size=3)), max_size=15).map("".join))
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(TEXT)
@example("5\u0301")
@example("St.\u0301 Louis")
@example("1/2/2024-01-05")
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@SETTINGS
@given(TEXT)
def test_normalize_leaves_no_digit(text):
    assert not any(ch in "0123456789" for ch in normalize(text))


@SETTINGS
@given(TEXT)
def test_model_text_is_in_the_allowed_set_and_idempotent(text):
    cleaned = model_text(normalize(text))
    assert set(cleaned) <= ALLOWED_MODEL_CHARS
    assert model_text(cleaned) == cleaned
    raw = model_text(text)  # safe on text that was never normalized
    assert set(raw) <= ALLOWED_MODEL_CHARS
    assert model_text(raw) == raw


@SETTINGS
@given(TEXT, st.floats(0, 5), st.floats(0.5, 40))
def test_split_loses_no_word(text, low, high):
    chunks = split(text, min_seconds=low, max_seconds=max(low, high))
    assert " ".join(chunks).split() == text.split()
    assert all(chunk and chunk == chunk.strip() and "\n" not in chunk for chunk in chunks)
    assert chunks == list(incremental_split(text.splitlines(), max(low, 0), max(low, high))) or low > high


@SETTINGS
@given(TEXT)
def test_split_sentences_loses_no_word(text):
    assert " ".join(split_sentences(text)).split() == text.split()
