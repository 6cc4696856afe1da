"""Numbers to English words: cardinals, ordinals, years, decimals and digit strings."""

from __future__ import annotations

from functools import lru_cache

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
# Digits in the largest number said with scale words (999 decillion, num2words' last scale).
_MAX_NAMED_DIGITS = 36
_DIGIT_WORDS = dict(zip("0123456789", _ONES[:10]))


@lru_cache(maxsize=4096)
def _spell(n: int, to: str) -> str:
    """num2words says the number; we keep our style: no commas, no hyphens, no 'and'."""
    # Imported on first use: num2words loads every language it has (tens of milliseconds),
    # which text without numbers, and `soprano --help`, never pay.
    from num2words import num2words

    said = num2words(n, lang="en", to=to).replace(",", "").replace("-", " ")
    return " ".join(word for word in said.split() if word != "and")


def cardinal(n: int) -> str:
    """1234 -> 'one thousand two hundred thirty four' (no 'and', no hyphens)."""
    if n < 0:
        return "minus " + cardinal(-n)
    if len(str(n)) > _MAX_NAMED_DIGITS:
        # Past the named scales nobody says the number: read it digit by digit.
        return digits(str(n))
    return _spell(n, "cardinal")


def ordinal_words(words: str) -> str:
    """Turn the last word of a cardinal into its ordinal: 'twenty one' -> 'twenty first'."""
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}" if head else last


def ordinal(n: int) -> str:
    """22 -> 'twenty second'."""
    if n < 0 or len(str(n)) > _MAX_NAMED_DIGITS:
        return ordinal_words(cardinal(n))
    return _spell(n, "ordinal")


def digits(text: str, zero: str = "zero") -> str:
    """'4075' -> 'four zero seven five'; non-digits are skipped."""
    return " ".join(zero if ch == "0" else _DIGIT_WORDS[ch] for ch in text if ch in _DIGIT_WORDS)


def number(text: str) -> str:
    """A written integer ('1,234', '007', '42') as it is read aloud."""
    plain = text.replace(",", "")
    if len(plain) > 1 and plain.startswith("0"):
        return digits(plain)  # leading zeros: a code, read digit by digit
    if len(plain) > _MAX_NAMED_DIGITS:
        # Past the named scales the number is read digit by digit anyway; not calling int()
        # also keeps Python's 4,300-digit int/str conversion limit out of reach.
        return digits(plain)
    return cardinal(int(plain))


def integer(text: str) -> int | None:
    """A written integer's value, or None when it has too many digits to be said as a number."""
    plain = text.replace(",", "")
    return int(plain) if len(plain) <= _MAX_NAMED_DIGITS else None


def decimal(text: str) -> str:
    """'3.14' -> 'three point one four'; '.5' -> 'point five'; '1,234.5' keeps its separators."""
    whole, _, frac = text.partition(".")
    head = number(whole) if whole else ""
    tail = digits(frac)
    return f"{head} point {tail}".strip() if frac else head


def year(n: int) -> str:
    """1999 -> 'nineteen ninety nine', 2005 -> 'two thousand five', 1900 -> 'nineteen hundred'."""
    if n < 1000 or n > 9999:
        return cardinal(n)
    return _spell(n, "year")


def plural_words(words: str) -> str:
    """'nineteen eighty' -> 'nineteen eighties', 'eighteen hundred' -> 'eighteen hundreds'."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):
        return words + "es"
    return words + "s"
