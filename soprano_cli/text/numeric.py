"""Written forms that contain digits: phone numbers, dates, times, money, measures, math, numbers.

Each rule is a compiled pattern and a function from its match to words. `expand_numbers`
applies them in order, most specific first; the last rule reads any digits still left, so
the result never contains a digit (which is what makes `normalize` idempotent).
"""

from __future__ import annotations

import re

from soprano_cli.text import numbers as nw
from soprano_cli.text.vocab import CURRENCIES, MAGNITUDES, MONTH_NAMES, MONTHS, PER_UNITS, STARTERS, UNITS

# An integer with or without thousands separators, optionally with decimals.
NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_START = r"(?<![\w.,])"  # not inside a longer number or word
_END = r"(?![\d,]\d|\.\d|\w)"


def amount(text: str) -> str:
    """A written number with optional separators and decimals, read aloud."""
    return nw.decimal(text) if "." in text else nw.number(text)


def _is_one(text: str) -> bool:
    return text.lstrip("-") == "1"


def _sub(pattern: str, needs_digit: bool = True, needs: str = ""):
    """Register a rule; `needs` lists characters one of which must be present for it to apply."""
    compiled = re.compile(pattern)

    def register(function):
        _RULES.append((compiled, function, needs_digit, needs))
        return function

    return register


_RULES: list = []
_MONTH_RE = "|".join(sorted((m.capitalize() for m in MONTHS), key=len, reverse=True))
_AMPM = r"(?P<ampm>[ap]\.m\.|[ap]m\b|[AP]\.M\.|[AP]M\b)"


_ONLY_SPACE = re.compile(r"\s*\Z")
_NEXT_WORD = re.compile(r"\s+([A-Z][a-z]*)")


def _sentence_period(text: str, end: int) -> str:
    """'.' when a dotted form like 'p.m.' at `end` also closes the sentence."""
    if _ONLY_SPACE.match(text, end):  # at a position: slicing the rest per match is quadratic
        return "."
    match = _NEXT_WORD.match(text, end)
    return "." if match and match.group(1) in STARTERS else ""


# --- phone numbers: digits read one by one, groups separated by a pause ---------------------


def _phone_groups(*groups: str) -> str:
    return ", ".join(nw.digits(group) for group in groups if group)


@_sub(r"(?<![\w+])\+(\d{1,3})((?:[ .-]\(?\d{1,4}\)?){2,5})(?![\w-])", needs='+')
def _international(m: re.Match) -> str:
    return "plus " + _phone_groups(m.group(1), *re.findall(r"\d+", m.group(2)))


@_sub(r"(?<![\w-])(?:(1)[-. ])?\(?(\d{3})\)?[-. ]{1,2}(\d{3})[-.](\d{4})(?![\w-])", needs='-.( ')
def _phone(m: re.Match) -> str:
    return _phone_groups(*m.groups())


@_sub(r"(?<![\w-])\((\d{3})\)\s?(\d{3})[ -](\d{4})(?![\w-])", needs='(')
def _phone_parens(m: re.Match) -> str:
    return _phone_groups(*m.groups())


@_sub(r"(?<![\w.,-])(\d{3})-(\d{4})(?![\w-])", needs='-')
def _phone_local(m: re.Match) -> str:
    return _phone_groups(*m.groups())


# --- dates ----------------------------------------------------------------------------------


def _date(month: int, day: int, year: str | None, day_first: bool = False) -> str:
    name = MONTH_NAMES[month]
    said = f"the {nw.ordinal(day)} of {name}" if day_first else f"{name} {nw.ordinal(day)}"
    if year:
        said += ", " + (nw.year(int(year)) if len(year) == 4 else _two_digit_year(year))
    return said


def _two_digit_year(text: str) -> str:
    value = int(text)
    return f"oh {nw.cardinal(value)}" if value < 10 else nw.cardinal(value)


@_sub(r"(?<![\w.-])(\d{4})-(\d{2})-(\d{2})(?![\w-])", needs='-')
def _iso_date(m: re.Match) -> str:
    year, month, day = (int(g) for g in m.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return " ".join(nw.number(g) for g in m.groups())
    return _date(month, day, m.group(1))


@_sub(r"(?<![\w/.])(\d{1,2})([/.])(\d{1,2})\2(\d{4}|\d{2})(?![\w/]|\.\d)", needs='/.')
def _numeric_date(m: re.Match) -> str:
    first, second = int(m.group(1)), int(m.group(3))
    if 1 <= first <= 12 and 1 <= second <= 31:  # month first, as in the US
        return _date(first, second, m.group(4))
    if 1 <= second <= 12 and 1 <= first <= 31:
        return _date(second, first, m.group(4), day_first=True)
    return m.group(0).replace("/", " slash ")


@_sub(rf"\b(?P<month>{_MONTH_RE})\.?\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?(?!\d|:)\b(?:,?\s+(?P<year>\d{{4}})(?!\d))?")
def _month_day(m: re.Match) -> str:
    day = int(m.group("day"))
    if not 1 <= day <= 31:
        return m.group(0)
    return _date(MONTHS[m.group("month").lower()], day, m.group("year"))


@_sub(rf"(?<![\w.,])(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month>{_MONTH_RE})\b\.?(?:,?\s+(?P<year>\d{{4}})(?!\d))?")
def _day_month(m: re.Match) -> str:
    day = int(m.group("day"))
    if not 1 <= day <= 31:
        return m.group(0)
    said = _date(MONTHS[m.group("month").lower()], day, m.group("year"), day_first=True)
    if m.string[: m.start()].lower().endswith("the "):
        said = said[len("the "):]  # "the 4th of July"
    return said


@_sub(rf"\b(?P<month>{_MONTH_RE})\.?,?\s+(?P<year>\d{{4}})(?!\d)")
def _month_year(m: re.Match) -> str:
    return f"{MONTH_NAMES[MONTHS[m.group('month').lower()]]} {nw.year(int(m.group('year')))}"


# --- times ----------------------------------------------------------------------------------


def _ampm(m: re.Match) -> str:
    if not m.group("ampm"):
        return ""
    letters = "A M" if m.group("ampm")[0] in "aA" else "P M"
    period = _sentence_period(m.string, m.end()) if m.group("ampm").endswith(".") else ""
    return " " + letters + period


@_sub(rf"(?<![\w:.])(\d{{1,2}}):(\d{{2}})(?::(\d{{2}}))?(?!\d|:\d)(?:\s?{_AMPM})?", needs=':')
def _clock(m: re.Match) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 24 or minute > 59:
        return f"{nw.cardinal(hour)} to {nw.cardinal(minute)}"
    said = nw.cardinal(hour)
    if minute == 0:
        if not m.group("ampm"):
            said += " o'clock" if 1 <= hour <= 12 else " hundred"
    elif minute < 10:
        said += f" oh {nw.cardinal(minute)}"
    else:
        said += f" {nw.cardinal(minute)}"
    if m.group(3):
        said += f" and {nw.cardinal(int(m.group(3)))} seconds"
    return said + _ampm(m)


@_sub(rf"(?<![\w:.,])(\d{{1,2}})\s?{_AMPM}", needs='apAP')
def _hour_ampm(m: re.Match) -> str:
    return nw.cardinal(int(m.group(1))) + _ampm(m)


@_sub(r"(?<![\w:.,])(\d+):(\d+)(?![\w:])", needs=':')
def _ratio(m: re.Match) -> str:
    return f"{nw.number(m.group(1))} to {nw.number(m.group(2))}"


# --- money ----------------------------------------------------------------------------------

_CURRENCY = "[" + re.escape("".join(CURRENCIES)) + "]"
_MAGNITUDE = "|".join(sorted(MAGNITUDES, key=len, reverse=True))


def _money(sign: str, symbol: str, low: str, high: str | None, magnitude: str | None) -> str:
    one, many, cent, cents = CURRENCIES[symbol]
    minus = "minus " if sign else ""
    if magnitude:
        words = amount(low) + (f" to {amount(high)}" if high else "")
        return f"{minus}{words} {MAGNITUDES[magnitude]} {many}"
    if high:
        return f"{minus}{amount(low)} to {amount(high)} {many}"
    whole, _, fraction = low.partition(".")
    if fraction and len(fraction) != 2:
        return f"{minus}{amount(low)} {many}"
    units = nw.integer(whole or "0")
    if units is None:  # too many digits to be said as a number
        return f"{minus}{amount(low)} {many}"
    said = f"{nw.number(whole)} {one if units == 1 else many}" if whole else ""
    if fraction and int(fraction):
        part = f"{nw.cardinal(int(fraction))} {cent if int(fraction) == 1 else cents}"
        said = f"{said} and {part}" if units else part
    elif not said:
        said = f"zero {many}"
    return minus + said


@_sub(rf"(?<![\w$€£¥₹₩₽₿])(-)?({_CURRENCY})\s?({NUM})(?:\s?[-–]\s?({NUM}))?(?:\s?({_MAGNITUDE})(?![\w]))?", needs='$€£¥₹₩₽₿')
def _currency_before(m: re.Match) -> str:
    return _money(m.group(1), m.group(2), *m.group(3, 4, 5))


@_sub(rf"{_START}(-)?({NUM})(?:\s?({_MAGNITUDE}))?\s?({_CURRENCY})(?![\w])", needs='$€£¥₹₩₽₿')
def _currency_after(m: re.Match) -> str:
    return _money(m.group(1), m.group(4), m.group(2), None, m.group(3))


@_sub(rf"{_START}({NUM})\s?¢", needs='¢')
def _cents(m: re.Match) -> str:
    return f"{amount(m.group(1))} {'cent' if _is_one(m.group(1)) else 'cents'}"


# --- measures: units, percent, feet and inches ------------------------------------------------

_UNIT = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_PER = "|".join(re.escape(u) for u in sorted(PER_UNITS, key=len, reverse=True))


@_sub(r"(?<![\w.])(\d{1,2})'\s?(\d{1,2})(?:\"|'')", needs="'")
def _feet_inches(m: re.Match) -> str:
    feet, inches = m.group(1), m.group(2)
    return (f"{nw.number(feet)} {'foot' if _is_one(feet) else 'feet'} "
            f"{nw.number(inches)} {'inch' if _is_one(inches) else 'inches'}")


@_sub(rf"{_START}(-)?({NUM})(?:\s?(?:-|–|to)\s?(-)?({NUM}))?(?P<space>\s?)(?P<unit>{_UNIT})(?:/(?P<per>{_PER}))?(?![\w°/])")
def _measure(m: re.Match) -> str:
    unit, per = m.group("unit"), m.group("per")
    if unit in ("s", "h", "m", "g", "l", "B", "V", "W") and not m.group("space") and not per:
        # "5s", "2B", "3m" are as often decades, ranks or magnitudes as units: leave to later rules.
        if unit in ("s", "B"):
            return m.group(0)
    low, high = m.group(2), m.group(4)
    said = ("minus " if m.group(1) else "") + amount(low)
    if high:
        said += " to " + ("minus " if m.group(3) else "") + amount(high)
    singular, plural = UNITS[unit]
    said += " " + (singular if _is_one(low) and not high else plural)
    if per:
        said += " per " + PER_UNITS[per]
    return said


# --- ordinals, decades, fractions, ranges, years ----------------------------------------------


@_sub(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(st|nd|rd|th|ST|ND|RD|TH)\b")
def _ordinal(m: re.Match) -> str:
    return nw.ordinal_words(nw.number(m.group(1)))


@_sub(r"(?<![\w.,'])'?(\d{2}|1\d{3}|20\d{2})'?s\b", needs='s')
def _decade(m: re.Match) -> str:
    value = int(m.group(1))
    if value % 10:
        return m.group(0)
    return nw.plural_words(nw.year(value) if value >= 1000 else nw.cardinal(value))


_FRACTIONS = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _fraction(numerator: int, denominator: int) -> str:
    one, many = _FRACTIONS.get(denominator) or (nw.ordinal(denominator), nw.ordinal(denominator) + "s")
    return f"{nw.cardinal(numerator)} {one if numerator == 1 else many}"


@_sub(r"(?<![\w/.,])(\d+)\s(\d+)/(\d+)(?![\w/]|\.\d)", needs='/')
def _mixed_fraction(m: re.Match) -> str:
    if len(m.group(2)) > 3 or len(m.group(3)) > 3:
        return m.group(0)  # left to the simple fraction below
    whole, numerator, denominator = nw.integer(m.group(1)), int(m.group(2)), int(m.group(3))
    if whole is None or not 0 < numerator < denominator <= 100:
        return m.group(0)
    part = _fraction(numerator, denominator)
    if numerator == 1:
        part = "a " + part.split(" ", 1)[1]
    return f"{nw.cardinal(whole)} and {part}"


@_sub(r"(?<![\w/.,])(\d+)/(\d+)(?![\w/]|\.\d)", needs='/')
def _simple_fraction(m: re.Match) -> str:
    numerator, denominator = nw.integer(m.group(1)), nw.integer(m.group(2))
    if numerator is None or denominator is None:
        return f"{nw.number(m.group(1))} over {nw.number(m.group(2))}"
    if denominator and (denominator <= 10 or numerator < denominator <= 1000) and (numerator, denominator) != (24, 7):
        return _fraction(numerator, denominator)
    if numerator == denominator or (numerator, denominator) == (24, 7):
        return f"{nw.number(m.group(1))} {nw.number(m.group(2))}"
    return f"{nw.number(m.group(1))} over {nw.number(m.group(2))}"


def _is_year(text: str) -> bool:
    return len(text) == 4 and text.isdigit() and 1000 <= int(text) <= 2099


@_sub(rf"{_START}({NUM})-({NUM})(?![\w-]|\.\d)", needs='-')
def _range(m: re.Match) -> str:
    low, high = m.group(1), m.group(2)
    if _is_year(low) and (_is_year(high) or len(high) == 2):
        return f"{nw.year(int(low))} to " + (nw.year(int(high)) if len(high) == 4 else nw.cardinal(int(high)))
    return f"{amount(low)} to {amount(high)}"


# Words after which a four-digit number is a year: "in 1999", "since 1066", "the year 2012".
_YEAR_CUE = re.compile(
    r"(?i:\b(?:in|since|from|until|till|to|by|of|year|circa|around|before|after|during|early|late|mid|"
    r"summer|spring|autumn|fall|winter|between|through|and|or|c\.|ca\.|born|died|founded|established|est\.))\s+$"
)
_ERA = re.compile(r"\s?(?:BC|AD|BCE|CE|B\.C\.|A\.D\.)(?!\w)")


@_sub(r"(?<![\w.,])(1\d\d\d|20\d\d)(?![\w,]|\.\d)")
def _year(m: re.Match) -> str:
    # The cue is checked on the text just before the digits: a pattern anchored on the
    # digits is far cheaper than one that tries every word of the text as a cue.
    before = m.string[max(0, m.start() - 16) : m.start()]
    if _YEAR_CUE.search(before) or _ERA.match(m.string, m.end()):
        return nw.year(int(m.group(1)))
    return m.group(0)


@_sub(r"(?:^|(?<=[.!?]\s)|(?<=^[\"(]))(1[1-9]\d\d|20\d\d)(?=\s(?:was|is|saw|had|marked|brought|will|began|ended|became)\b)")
def _year_subject(m: re.Match) -> str:
    return nw.year(int(m.group(1)))


# --- math -----------------------------------------------------------------------------------

_OPERAND = r"(?:\d|\b[^\W\d_]\b|\))"


@_sub(r"(?<=[\w)])\^(2|3)(?![\d.])", needs='^')
def _power_small(m: re.Match) -> str:
    return " squared" if m.group(1) == "2" else " cubed"


@_sub(r"(?<=[\w)])\s?\^\s?(?=[\w(-])", needs_digit=False, needs="^")
def _power(m: re.Match) -> str:
    return " to the power of "


@_sub(r"(?<=\d)\s?[x×]\s?(?=\d)", needs='x×')
def _by(m: re.Match) -> str:
    return " by " if m.group(0).strip() == "x" else " times "


@_sub(r"(?<![\w.])(\d+(?:\.\d+)?)x(?!\w)", needs='x')
def _times_factor(m: re.Match) -> str:
    return f"{amount(m.group(1))} times"


_OPERATORS = {"*": "times", "×": "times", "÷": "divided by", "−": "minus", "+": "plus", "=": "equals",
              "<": "is less than", ">": "is greater than", "≤": "is less than or equal to",
              "≥": "is greater than or equal to", "≠": "does not equal", "≈": "is approximately",
              "±": "plus or minus", "/": "divided by", "-": "minus"}


@_sub(rf"(?<={_OPERAND})\s*(<=|>=|[*×÷−+=<>≤≥≠≈±])\s*(?=[\d(]|\b[^\W\d_]\b|[−-]\d)", needs_digit=False, needs="*×÷−+=<>≤≥≠≈±")
def _operator(m: re.Match) -> str:
    symbol = {"<=": "≤", ">=": "≥"}.get(m.group(1), m.group(1))
    return f" {_OPERATORS[symbol]} "


@_sub(r"(?<=\d)\s+[-−]\s+(?=\d)", needs='-−')
def _spaced_minus(m: re.Match) -> str:
    return " minus "


@_sub(r"(?<![\w.,)])[-−](?=\.?\d)", needs='-−')
def _negative(m: re.Match) -> str:
    return "minus "


@_sub(r"#(?=\d)", needs='#')
def _number_sign(m: re.Match) -> str:
    return "number "


@_sub(rf"{_START}({NUM})\s?%", needs='%')
def _percent(m: re.Match) -> str:
    return f"{amount(m.group(1))} percent"


# --- whatever digits are left ----------------------------------------------------------------


@_sub(r"(?<![\d.])\d+(?:\.\d+){2,}(?![\d.])")
def _dotted_number(m: re.Match) -> str:
    parts = m.group(0).split(".")
    joiner = " dot " if len(parts) == 4 else " point "  # an IP address, or a version
    return joiner.join(nw.number(p) for p in parts)


@_sub(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d*\.\d+|\d+")
def _plain_number(m: re.Match) -> str:
    text = m.string
    said = amount(m.group(0))
    before = " " if m.start() and text[m.start() - 1].isalpha() else ""
    after = " " if m.end() < len(text) and text[m.end()].isalpha() else ""
    return before + said + after


def expand_numbers(text: str) -> str:
    """Replace every written form with digits by its words; the result holds no ASCII digit."""
    has_digit = _DIGIT.search(text) is not None
    for pattern, function, needs_digit, needs in _RULES:
        if (has_digit or not needs_digit) and (not needs or any(ch in text for ch in needs)):
            text = pattern.sub(function, text)
    return text


_DIGIT = re.compile(r"\d")
