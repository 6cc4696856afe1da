"""Numbers to English words: cardinals, ordinals, years, decimals and digit strings."""

from __future__ import annotations

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
# Short scale, as American and modern British English read it.
_SCALES = (
    "",
    "thousand",
    "million",
    "billion",
    "trillion",
    "quadrillion",
    "quintillion",
    "sextillion",
    "septillion",
    "octillion",
    "nonillion",
    "decillion",
)
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
# Digits in the largest number said with scale words (999 decillion).
_MAX_NAMED_DIGITS = 3 * len(_SCALES)
_DIGIT_WORDS = dict(zip("0123456789", _ONES[:10]))


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens])
        if ones:
            words.append(_ONES[ones])
    elif rest or not words:
        words.append(_ONES[rest])
    return words


def cardinal(n: int) -> str:
    """1234 -> 'one thousand two hundred thirty four' (no 'and', no hyphens)."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n >= 1000 ** len(_SCALES):
        # Past the named scales nobody says the number: read it digit by digit.
        return digits(str(n))
    if n < 1000:
        return " ".join(_below_thousand(n))
    words: list[str] = []
    scale = 0
    groups: list[list[str]] = []
    while n:
        n, group = divmod(n, 1000)
        if group:
            groups.append(_below_thousand(group) + ([_SCALES[scale]] if scale else []))
        scale += 1
    for group in reversed(groups):
        words += group
    return " ".join(words)


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
    return ordinal_words(cardinal(n))


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
    high, low = divmod(n, 100)
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {_ONES[low]}"
    return f"{cardinal(high)} {cardinal(low)}"


def plural_words(words: str) -> str:
    """'nineteen eighty' -> 'nineteen eighties', 'eighteen hundred' -> 'eighteen hundreds'."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):
        return words + "es"
    return words + "s"
