"""Text processing takes time linear in its input: adversarial lines for every rule family.

Regression (#23): one long line locked up `normalize` and `synth`. The e-mail pattern scanned
from every start inside a run like 'a.a.a… @' to its end (8 KB 1 s, 32 KB 12.6 s, 100 KB never
finished), and each abbreviation, initial or 'p.m.' sliced the rest of the line (quadratic copies).
Each family below is one shape a rule looks for, repeated; 64 times the input must cost well
under 64 x 3 times the time (a quadratic rule costs about 4,000 times).
"""

from __future__ import annotations

import time

import pytest

from soprano_cli.text import TextOptions, model_text, normalize, split
from soprano_cli.text.lexicon import parse

SMALL = 1024
GROWTH = 64
ALLOWED = GROWTH * 3

# name -> a function from a length to a line of about that many characters.
FAMILIES = {
    "e-mail-like": lambda n: "a." * (n // 2) + " @",
    "e-mail long local part": lambda n: "a" * n + "@b",
    "e-mail long domain": lambda n: "a@" + "b-" * (n // 2) + "!",
    "url": lambda n: "http://" + "a." * (n // 2),
    "url trailing punctuation": lambda n: "see www." + "." * n + "a",
    "domain hyphens": lambda n: "a-" * (n // 2) + ".",
    "domain labels": lambda n: "a." * (n // 2) + "notatld",
    "latin abbreviations": lambda n: "etc. " * (n // 5),
    "titles": lambda n: "Dr. " * (n // 4),
    "street": lambda n: "Baker St. " * (n // 10),
    "initials": lambda n: "A. " * (n // 3),
    "dotted capitals": lambda n: "U.S. " * (n // 5),
    "dotted letters unfinished": lambda n: "a." * (n // 2) + "b",
    "times": lambda n: "5 p.m. " * (n // 7),
    "clock": lambda n: "1:" * (n // 2),
    "thousands separators": lambda n: "1," * (n // 2),
    "grouped thousands": lambda n: "1,000" * (n // 5),
    "decimals": lambda n: "1.1" * (n // 3),
    "dotted numbers": lambda n: "1." * (n // 2) + ".",
    "digit run": lambda n: "1" * n,
    "digit run unit": lambda n: "1" * n + " km",
    "spaced digits": lambda n: "1 " * (n // 2),
    "money": lambda n: "$" + "1," * (n // 2),
    "money after": lambda n: "1 " * (n // 2) + "$",
    "phone": lambda n: "+1" + " 1" * (n // 2),
    "ranges": lambda n: "1-" * (n // 2) + "km",
    "fractions": lambda n: "1/" * (n // 2),
    "mixed fractions": lambda n: "1 " * (n // 2) + "1/2",
    "operators": lambda n: "1+" * (n // 2),
    "minus signs": lambda n: "-" * n + "1",
    "powers": lambda n: "a^" * (n // 2),
    "factors": lambda n: "1x" * (n // 2),
    "ordinals": lambda n: "1" * n + "s",
    "months": lambda n: "May " * (n // 4),
    "day then month": lambda n: "1 " * (n // 2) + "May",
    "roman numerals": lambda n: "Louis " + "I" * n + ".a",
    "roman cues": lambda n: "War II " * (n // 7),
    "spaced dots": lambda n: "a " + ". " * (n // 2),
    "inline list": lambda n: "1. a " * (n // 5),
    "street addresses": lambda n: "1 Elm St, " * (n // 10),
    "states": lambda n: ", CA" * (n // 4),
    "dashed digits": lambda n: "11-" * (n // 3),
    "marked ranges": lambda n: "1%-" * (n // 3),
    "file names": lambda n: "a." * (n // 2) + "html",
    "acronyms": lambda n: "ABC " * (n // 4),
    "ampersands": lambda n: "A&" * (n // 2),
    "repeated punctuation": lambda n: "!?" * (n // 2),
    "dots": lambda n: "." * n,
    "pauses": lambda n: ", ;" * (n // 3),
    "commas before a stop": lambda n: "," * n + "a",
    "spaces": lambda n: "a" + " " * n + "b",
    "dashes": lambda n: "—" * n,
    "spaced dashes": lambda n: "é" + " " * n + "x",
    "year ranges": lambda n: "1 – " * (n // 4),
    "curly quotes": lambda n: "‘a’ " * (n // 4),
    "apostrophes": lambda n: "'" * n,
    "hashtags": lambda n: "#" * n,
    "slashes": lambda n: "w/" * (n // 2),
    "parentheses": lambda n: "(" * n,
    "control characters": lambda n: "a\x00" * (n // 2),
    "plain prose": lambda n: "The cat sat on the mat. " * (n // 24),
}


def _best_of_3(function, text: str) -> float:
    """CPU seconds of this process, best of three: other work on a loaded machine does not count."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        function(text)
        best = min(best, time.process_time() - start)
    return best


def _growth(function, family) -> float:
    """How many times longer 64x the input takes; a probe at 8x first, so a quadratic rule fails fast."""
    small = max(_best_of_3(function, family(SMALL)), 1e-5)
    probe = _best_of_3(function, family(SMALL * 8)) / small
    if probe > 8 * 3:
        return probe * GROWTH / 8  # what 64x would cost, at the growth already seen
    growth = _best_of_3(function, family(SMALL * GROWTH)) / small
    if growth >= ALLOWED:  # once more, against a stray slow run; a quadratic rule is ~20x over
        growth = min(growth, _best_of_3(function, family(SMALL * GROWTH)) / small)
    return growth


@pytest.mark.parametrize("name", list(FAMILIES))
def test_normalize_is_linear(name):
    growth = _growth(normalize, FAMILIES[name])
    assert growth < ALLOWED, f"{name}: 64x the input took {growth:.0f}x the time"


# normalize's options (issue 18): markdown markers left open or nested, lexicon words, kept classes.
# (A lexicon's own /regex/ runs as its author wrote it: "c+d" over "cccc…" is theirs to avoid.)
OPTIONS = TextOptions(markdown=True, lexicon=parse("a\tb\n/cd/\te\n"), urls=False, emails=False, phone_numbers=False)
OPTION_FAMILIES = {
    "open bold": lambda n: "**a" * (n // 3),
    "open emphasis": lambda n: "*a _b " * (n // 6),
    "open links": lambda n: "[a](" * (n // 4),
    "nested brackets": lambda n: "[" * (n // 2) + "]" * (n // 2),
    "code ticks": lambda n: "`a" * (n // 2),
    "table cells": lambda n: "|a" * (n // 2),
    "emoji": lambda n: "🎉a" * (n // 2),
    "lexicon words": lambda n: "a " * (n // 2),
    "lexicon pattern": lambda n: "c" * n,
    "kept urls": lambda n: "www." * (n // 4),
    "kept e-mails": lambda n: "a." * (n // 2) + "@",
    "kept phones": lambda n: "555-123-" * (n // 8),
}


def _with_options(text: str) -> str:
    return normalize(text, OPTIONS)


@pytest.mark.parametrize("name", list(OPTION_FAMILIES))
def test_normalize_with_options_is_linear(name):
    growth = _growth(_with_options, OPTION_FAMILIES[name])
    assert growth < ALLOWED, f"{name}: 64x the input took {growth:.0f}x the time"


@pytest.mark.parametrize("pattern", ["1 May, 5 p.m. Dr. A. **b** [c](d) $1,000 www.e.io ", "**a*b_c`d[e]("])
def test_ten_thousand_repeats_and_a_megabyte(pattern):
    # Pattern repeated 10,000 times, then a 1 MB line of it: no worse than linear from one to the other.
    ten_thousand = pattern * 10_000
    small = max(_best_of_3(_with_options, ten_thousand[: 1 << 14]), 1e-5)
    megabyte = (pattern * ((1 << 20) // len(pattern) + 1))[: 1 << 20]
    start = time.process_time()
    _with_options(megabyte)
    assert (time.process_time() - start) / small < ALLOWED  # 64 times the text
    assert isinstance(_with_options(ten_thousand), str)


@pytest.mark.parametrize("name", ["latin abbreviations", "initials", "dotted capitals", "dots", "spaces", "plain prose"])
def test_split_and_model_text_are_linear(name):
    for function in (split, model_text):
        growth = _growth(function, FAMILIES[name])
        assert growth < ALLOWED, f"{function.__name__} on {name}: 64x the input took {growth:.0f}x the time"
