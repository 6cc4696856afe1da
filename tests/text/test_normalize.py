"""normalize and model_text, table-tested: written -> spoken, per category."""

from __future__ import annotations

import pytest

from soprano_cli.text import ALLOWED_MODEL_CHARS, model_text, normalize
from tests.text.cases import ALL

CASES = [pytest.param(written, spoken, id=f"{category}-{i}") for category, rows in ALL.items() for i, (written, spoken) in enumerate(rows)]


def test_enough_cases_in_every_category():
    assert len(CASES) >= 300
    assert all(len(rows) >= 5 for rows in ALL.values())


@pytest.mark.parametrize(("written", "spoken"), CASES)
def test_normalize(written, spoken):
    assert normalize(written) == spoken


@pytest.mark.parametrize(("written", "spoken"), CASES)
def test_normalize_is_idempotent_on_the_table(written, spoken):
    assert normalize(spoken) == spoken


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello World!", "hello world!"),
        ("Time: now; later", "time. now, later"),
        ('He said "hi" (twice) [sic]', "he said hi twice sic"),
        ("Straße, Æsir, Øre, Łódź, Đorđe, Þór", "strasse, aesir, ore, lodz, dorde, thor"),
        ("café naïve résumé", "cafe naive resume"),
        ("don’t — stop…", "don't - stop..."),
        ("a\tb\n\nc", "a b c"),
        ("50% & $5 * 2", "50% & $5 * 2"),
        ("emoji 🙂 and 漢字", "emoji and"),
        ("  spaced  out  ", "spaced out"),
        ("end .", "end."),
    ],
)
def test_model_text(text, expected):
    assert model_text(text) == expected
    assert set(model_text(text)) <= ALLOWED_MODEL_CHARS


def test_model_text_after_normalize_is_what_the_model_reads():
    assert model_text(normalize("Dr. Smith paid $5 on Jan. 5, 2021: great!")) == (
        "doctor smith paid five dollars on january fifth, twenty twenty one. great!"
    )


def test_allowed_model_chars_is_the_reference_set():
    assert ALLOWED_MODEL_CHARS == frozenset("abcdefghijklmnopqrstuvwxyz0123456789 !$%&'*,-.?")
