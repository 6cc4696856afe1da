"""numbers.py: num2words says the number, in our style (no commas, hyphens or 'and')."""

from __future__ import annotations

import pytest

from soprano_cli.text import numbers as nw


@pytest.mark.parametrize(
    ("function", "value", "said"),
    [
        (nw.cardinal, 1234, "one thousand two hundred thirty four"),
        (nw.cardinal, 101, "one hundred one"),
        (nw.cardinal, 18081, "eighteen thousand eighty one"),
        (nw.cardinal, -42, "minus forty two"),
        (nw.cardinal, 10**35, "one hundred decillion"),
        (nw.ordinal, 111, "one hundred eleventh"),
        (nw.ordinal, 22, "twenty second"),
        (nw.year, 2005, "two thousand five"),
        (nw.year, 1905, "nineteen oh five"),
        (nw.year, 1900, "nineteen hundred"),
        (nw.year, 2010, "twenty ten"),
    ],
)
def test_said_in_our_style(function, value, said):
    assert function(value) == said


def test_past_the_named_scales_digits_are_read_one_by_one():
    assert nw.cardinal(10**36) == "one " + " ".join(["zero"] * 36)


@pytest.mark.parametrize("value", [0, 7, 99, 1001, 123456789, 10**30 + 17])
def test_no_commas_hyphens_or_and(value):
    said = nw.cardinal(value) + " " + nw.ordinal(value)
    assert not {",", "-"} & set(said) and " and " not in f" {said} "
