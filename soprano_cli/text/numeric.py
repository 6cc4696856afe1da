"""Written forms that contain digits: phone numbers, dates, times, money, measures, math, numbers.

Each rule is a compiled pattern and a function from its match to words. `expand_numbers`
applies them in order, most specific first; the last rule reads any digits still left, so
the result never contains a digit (which is what makes `normalize` idempotent).
"""

from __future__ import annotations

import re

from soprano_cli.text import numbers as nw
from soprano_cli.text.contacts import INTERNATIONAL_PHONE, NORTH_AMERICAN_PHONE, PARENTHESIZED_PHONE
from soprano_cli.text.vocab import (
    COMPASS,
    CURRENCIES,
    LENGTHS,
    MAGNITUDES,
    MONTH_NAMES,
    MONTHS,
    PER_UNITS,
    STARTERS,
    STREET_TYPES,
    UNITS,
    US_STATES,
)

# An integer with or without thousands separators, optionally with decimals.
NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_START = r"(?<![\w.,])"  # not inside a longer number or word
_END = r"(?![\d,]\d|\.\d|\w)"


def amount(text: str) -> str:
    """A written number with optional separators and decimals, read aloud."""
    return nw.decimal(text) if "." in text else nw.number(text)


def _is_one(text: str) -> bool:
    return text.lstrip("-") == "1"


def _sub(pattern: str, needs_digit: bool = True, needs: str = "", guard: str | None = None, near: str | None = None):
    """Register a rule; `needs` lists characters one of which must be present for it to apply.

    `guard` names a cheap check that must find something first (see `_GUARDS`): several rules
    share one, so one scan of the text spares several. `near` is a pattern that any match of
    the rule also matches, starting with a digit or a letter: scanning for it is several
    times cheaper than for the rule itself, whose lookbehind defeats the regex engine's
    first-character search, so a rule is only run on text that has one.
    """
    compiled = re.compile(pattern)
    nearby = re.compile(near) if near else None

    def register(function):
        _RULES.append((compiled, function, needs_digit, needs, guard, nearby))
        return function

    return register


_RULES: list = []
# Month names in any case ("july", "JAN."): a date is a date however it is typed. Lowercase
# "may" is a verb too, so it counts as a month only next to a day or a year, as in every rule below.
_MONTH_RE = "(?i:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + ")"
_AMPM = r"(?P<ampm>[ap]\.m\.|[ap]\.m\b|[ap]m\b|[AP]\.M\.|[AP]\.M\b|[AP]M\b)"
# A time zone after a time: "EST", "e.s.t", "GMT".
_ZONE = r"(?:\s?(?P<zone>(?i:[ECMP][SD]T|UTC|GMT|[ecmp]\.[sd]\.t\.?))(?![\w.]))?"


# Checks shared by several rules, each run at most once a text: a month name, a cue for a code.
_GUARDS = {
    # A month name before a number ("Jan. 5", "May 2020") or after one ("5th of July").
    "month": re.compile(r"(?i:(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?,?[\s-]+\d"
                        r"|\d(?:st|nd|rd|th)?\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))"),
    "code": re.compile(r"(?i:\b(?:ending|ends|pin|otp|code|passcode|zip|postcode|acc|serial|track|ext|badge|ticket|order))"),
}


def _month(text: str) -> int:
    return MONTHS[text.lower().rstrip(".")]


@_sub(r"~\s?(?=[$€£¥₹]?\d)", needs="~")
def _about(m: re.Match) -> str:
    return "about "


# --- ranges written with marked ends: "9am-5pm", "$250-$300", "2%-10%", "1960s-80s" ---------

_MARKED = (r"(?:[$€£¥₹]\s?\d[\d,.]*(?:\s?(?:[kKmMbB]|bn|mn)\b)?|\d{1,2}(?::\d{2})?\s?(?:[ap]\.?m\b\.?|[AP]\.?M\b\.?)"
           r"|\d{1,2}:\d{2}|\d[\d,.]*\s?%|'?\d{2,4}'?s)")


@_sub(rf"(?<![\w.,-])({_MARKED})\s?[-–]\s?({_MARKED})(?![\w-])", needs="-–")
def _marked_range(m: re.Match) -> str:
    # Each end is left to its own rule below; only the dash becomes "to".
    return f"{m.group(1)} to {m.group(2)}"


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


@_sub(INTERNATIONAL_PHONE, needs='+')
def _international(m: re.Match) -> str:
    return "plus " + _phone_groups(m.group(1), *re.findall(r"\d+", m.group(2)))


@_sub(NORTH_AMERICAN_PHONE, needs='-.( ', near=r"\d{3}[-.]\d{4}")
def _phone(m: re.Match) -> str:
    return _phone_groups(*m.groups())


@_sub(PARENTHESIZED_PHONE, needs='(')
def _phone_parens(m: re.Match) -> str:
    return _phone_groups(*m.groups())


@_sub(r"(?<![\w.,-])(\d{3})-(\d{4})(?![\w-])", needs='-')
def _phone_local(m: re.Match) -> str:
    return _phone_groups(*m.groups())


# --- codes: digits read one by one ----------------------------------------------------------

# Words after which a number is a code, not a quantity: "card ending in 8876", "PIN 1234".
_CODE_CUE = re.compile(
    r"(?i:\b(?:ending in|ends in|ending with|pin|otp|code|passcode|zip|zip code|postcode|account|acct|"
    r"serial|serial number|tracking number|extension|ext\.?|badge|ticket number|order number))"
    r"(?:\s+(?:is|was|number|no\.?))?\s*#?:?\s*$"
)


@_sub(r"(?<![\w.,$€£¥₹-])(\d{3,})(?![\w,]|\.\d)", guard="code")
def _code_after_cue(m: re.Match) -> str:
    before = m.string[max(0, m.start() - 24) : m.start()]
    return nw.digits(m.group(1)) if _CODE_CUE.search(before) else m.group(0)


@_sub(r"(?<![\w.-])([A-Z]{2,5})-(\d{4})-(\d{3,})(?![\w-]|\.\d)", needs="-", near=r"\d{4}-\d{3}")
def _registry_id(m: re.Match) -> str:
    # "CVE-2023-44487", "INC-2024-00123": letters, a year, then a number read digit by digit.
    letters, year, numerals = m.groups()
    said_year = nw.year(int(year)) if _is_year(year) else nw.digits(year)
    return f"{' '.join(letters)} {said_year} {nw.digits(numerals)}"


@_sub(r"(?<![\w.-])([A-Za-z]{2,4})(\d{3,})(?![\w.]|\.\d)", near=r"[A-Za-z]{2}\d{3}")
def _letters_then_digits(m: re.Match) -> str:
    # "ab9453", "SKU12345": an identifier, read as its letters then its digits one by one.
    letters, numerals = m.groups()
    if letters in ("FY", "CY") and _is_year(numerals):
        return f"{letters} {nw.year(int(numerals))}"  # "FY2024": a fiscal year, said as a year
    if letters.isupper() and len(letters) > 1 or letters.islower():
        return f"{letters} {nw.digits(numerals)}"
    return m.group(0)


def pairs(text: str) -> str:
    """'737' -> 'seven thirty seven', '1428' -> 'fourteen twenty eight', '708' -> 'seven oh eight'."""
    if len(text) == 3:
        head, tail = text[0], text[1:]
        said = "hundred" if tail == "00" else ("oh " + nw.digits(tail[1]) if tail[0] == "0" else nw.cardinal(int(tail)))
        return f"{nw.digits(head)} {said}"
    if len(text) == 4 and not text.startswith("0"):
        return nw.year(int(text))
    return nw.number(text) if len(text) < 3 else nw.digits(text)


# --- street addresses: "123 Main St., Apt 4B, Springfield, IL 62704" ---------------------------

_STREET = "|".join(sorted(STREET_TYPES, key=len, reverse=True))
_COMPASS = "|".join(sorted(COMPASS, key=len, reverse=True))


@_sub(rf"(?<![\w.,$-])(?P<number>\d{{1,5}})\s+(?:(?P<compass>{_COMPASS})\.?\s+)?"
      rf"(?P<name>(?:\d{{1,3}}(?:st|nd|rd|th)|[A-Z][a-z]+)(?:\s[A-Z][a-z]+){{0,2}})\s(?P<type>(?i:{_STREET}))\b(?P<dot>\.)?", near=r"\d\s+[A-Z\d]")
def _street(m: re.Match) -> str:
    # House numbers are said in pairs ("fourteen twenty eight Elm Street"), as people say them.
    said = f"{pairs(m.group('number'))} "
    if m.group("compass"):
        said += COMPASS[m.group("compass")] + " "
    kind = m.group("type")
    said += f"{m.group('name')} {STREET_TYPES[kind.lower()]}"
    if m.group("dot"):
        # "St." may also close the sentence; a full word keeps its period as it was.
        said += "." if kind.lower() in ("street", "avenue", "road", "drive", "lane", "court", "place") else _sentence_period(m.string, m.end())
    return said


@_sub(r"(?<=,\s)(?P<state>[A-Z]{2})(?P<sep>,?\s+)?(?P<zip>\d{5}(?:-\d{4})?)?(?=\s*$|[\s,.;)])", needs_digit=False)
def _state(m: re.Match) -> str:
    # ", CA 95051", ", NY": a state after a comma, with or without a ZIP code (read digit by digit).
    state = m.group("state")
    if state not in US_STATES or (not m.group("zip") and m.end() < len(m.string) and m.string[m.end()] == " "
                                  and not m.string[m.end():].lstrip()[:1] in ",.;)"):
        return m.group(0)
    said = US_STATES[state]
    if m.group("zip"):
        said += "," if "," in (m.group("sep") or "") else ""
        said += " " + ", ".join(nw.digits(part) for part in m.group("zip").split("-"))
    return said


@_sub(r"\b(Boeing|Airbus A|Airbus|Model|model|Flight|flight|Route|Highway|Interstate|I-|[Pp]ort|[Rr]oom|[Gg]ate"
      r"|RTX|GTX|RX|[Ee]rror|HTTP|[Ss]tatus|[Ss]tatus code)\s?(\d{3,4})\b(?![.,]\d)", near=r"[A-Za-z-]\s?\d{3}")
def _model_number(m: re.Match) -> str:
    # "Boeing 737", "Flight 1549", "port 8080", "RTX 4090", "Error 404": names said in pairs, as people say them.
    return f"{m.group(1).rstrip('-')} {pairs(m.group(2))}"


@_sub(r"(?<=[a-z]):(\d{2,5})(?![\d:]|\.\d)", needs=":")
def _port(m: re.Match) -> str:
    # "localhost:3000", "db:5432": a port after a host name, said in pairs like other labels.
    return f" colon {pairs(m.group(1)) if len(m.group(1)) == 4 else nw.number(m.group(1))}"


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


@_sub(r"(?<![\w/.-])(\d{4})([/.])(\d{1,2})\2(\d{1,2})(?![\w/]|\.\d)", needs='/.', near=r"\d{4}[/.]\d")
def _year_first_date(m: re.Match) -> str:
    # "2016/07/03", "1998/2/30": year, month, day; a day up to 31 whatever the month.
    month, day = int(m.group(3)), int(m.group(4))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m.group(0)
    return _date(month, day, m.group(1))


@_sub(r"(?<![\w/.-])(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?![\w/-]|\.\d)", needs='/.-', near=r"\d[/.-]\d{1,2}[/.-]\d")
def _numeric_date(m: re.Match) -> str:
    first, second = int(m.group(1)), int(m.group(3))
    if 1 <= first <= 12 and 1 <= second <= 31:  # month first, as in the US
        return _date(first, second, m.group(4))
    if 1 <= second <= 12 and 1 <= first <= 31:
        return _date(second, first, m.group(4), day_first=True)
    if m.group(2) == "-":
        return m.group(0)  # left to the digit groups below
    return m.group(0).replace("/", " slash ")


@_sub(r"(?<![\w.-])(\d{2,}(?:-\d+){2,})(?![\w-])", needs="-")
def _digit_groups(m: re.Match) -> str:
    # "111-11-1111", "123-123-5678-1111": an ID or a phone number, read in its groups.
    return _phone_groups(*m.group(1).split("-"))


@_sub(rf"\b(?P<month>{_MONTH_RE})\.?(?:\s+|-)(?P<day>\d{{1,2}})(?:st|nd|rd|th)?(?!\d|:)\b(?:(?:,?\s+|-)(?P<year>\d{{4}})(?![\d-]))?", guard="month")
def _month_day(m: re.Match) -> str:
    day = int(m.group("day"))
    if not 1 <= day <= 31 or (m.group("month") == "may" and not m.group("year")):
        return m.group(0)  # "you may 2x it": lowercase "may" needs a year too
    return _date(_month(m.group("month")), day, m.group("year"))


@_sub(rf"(?<![\w.,])(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<month>{_MONTH_RE})\b\.?(?:,?\s+(?P<year>\d{{4}})(?!\d))?", guard="month")
def _day_month(m: re.Match) -> str:
    day = int(m.group("day"))
    if not 1 <= day <= 31:
        return m.group(0)
    if m.group("month") == "may" and not m.group("year"):
        return m.group(0)
    said = _date(_month(m.group("month")), day, m.group("year"), day_first=True)
    if m.string[: m.start()].lower().endswith("the "):
        said = said[len("the "):]  # "the 4th of July"
    return said


@_sub(rf"\b(?P<month>{_MONTH_RE})\.?,?\s+(?P<year>\d{{4}})(?!\d)", guard="month")
def _month_year(m: re.Match) -> str:
    return f"{MONTH_NAMES[_month(m.group('month'))]} {nw.year(int(m.group('year')))}"


@_sub(r"(?<![\w.])([1-4])Q(\d{2}|\d{4})(?!\w)", needs="Q")
def _quarter(m: re.Match) -> str:
    # "2Q22": the second quarter of (twenty) twenty two.
    year = m.group(2)
    said = nw.year(int(year)) if len(year) == 4 else _two_digit_year(year)
    return f"the {nw.ordinal(int(m.group(1)))} quarter of {said}"


# --- times ----------------------------------------------------------------------------------


def _ampm(m: re.Match) -> str:
    said = ""
    if m.group("ampm"):
        said = " A M" if m.group("ampm")[0] in "aA" else " P M"
    if m.groupdict().get("zone"):
        said += " " + " ".join(m.group("zone").replace(".", "").upper())
        last = m.group("zone")
    else:
        last = m.group("ampm") or ""
    if last.endswith("."):
        said += _sentence_period(m.string, m.end())
    return said


def _unit(n: int, singular: str) -> str:
    return f"{nw.cardinal(n)} {singular}{'' if n == 1 else 's'}"


@_sub(rf"(?<![\w:.])(\d{{1,2}}):(\d{{2}}):(\d{{2}})(?![\d:]|\.\d)(?:\s?{_AMPM})?{_ZONE}", needs=':')
def _clock_seconds(m: re.Match) -> str:
    # h:mm:ss is most often a duration (a race, a video): said in hours, minutes and seconds.
    hours, minutes, seconds = (int(g) for g in m.group(1, 2, 3))
    if minutes > 59 or seconds > 59:
        return " to ".join(nw.cardinal(int(g)) for g in m.group(1, 2, 3))
    return f"{_unit(hours, 'hour')} {_unit(minutes, 'minute')} and {_unit(seconds, 'second')}" + _ampm(m)


def _clock_words(hour: int, minute: int, ampm: bool) -> str:
    said = nw.cardinal(hour)
    if minute == 0:
        if not ampm:
            said += " o'clock" if 1 <= hour <= 12 else " hundred"
    elif minute < 10:
        said += f" oh {nw.cardinal(minute)}"
    else:
        said += f" {nw.cardinal(minute)}"
    return said


@_sub(rf"(?<![\w:.])(\d{{1,2}}):(\d{{2}})(?!\d|:\d)(?:\s?{_AMPM})?{_ZONE}", needs=':')
def _clock(m: re.Match) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 24 or minute > 59:
        return f"{nw.cardinal(hour)} to {nw.cardinal(minute)}"
    return _clock_words(hour, minute, bool(m.group("ampm"))) + _ampm(m)


@_sub(rf"(?<![\w:.,])(\d{{1,2}})\.(\d{{2}})\s?{_AMPM}{_ZONE}", needs='apAP', near=r"\d\s?[apAP]")
def _dotted_clock(m: re.Match) -> str:
    # "1.59 p.m.": British style; only with a.m. or p.m., or it is a decimal.
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 12 or minute > 59:
        return m.group(0)
    return _clock_words(hour, minute, True) + _ampm(m)


@_sub(rf"(?<![\w:.,])(\d{{1,2}})\s?{_AMPM}{_ZONE}", needs='apAP', near=r"\d\s?[apAP]")
def _hour_ampm(m: re.Match) -> str:
    return nw.cardinal(int(m.group(1))) + _ampm(m)


@_sub(r"(?<![\w:.,])([01]\d|2[0-3])([0-5]\d)(?=\s?(?:hours|hrs|h)\b)", needs="h", near=r"\d\d\s?h")
def _military(m: re.Match) -> str:
    # "0800 hours": oh eight hundred hours; "1430 hrs": fourteen thirty hours.
    hour, minute = int(m.group(1)), int(m.group(2))
    said = ("oh " if m.group(1).startswith("0") else "") + nw.cardinal(hour)
    return said + (" hundred" if minute == 0 else " " + _clock_words(0, minute, True).split(" ", 1)[1])


@_sub(r"(?<![\w:.,])(\d+):(\d+)(?![\w:])", needs=':')
def _ratio(m: re.Match) -> str:
    return f"{nw.number(m.group(1))} to {nw.number(m.group(2))}"


# --- "per": "$20/hour", "£10/wk", "12/kg" ---------------------------------------------------

_PER_WORD = "|".join(re.escape(u) for u in sorted(PER_UNITS, key=len, reverse=True))


@_sub(rf"(?<=[\d$€£¥₹%])\s?/\s?(?:({_PER_WORD})\b\.?|([a-z]{{3,}})\b(?!/))", needs="/")
def _per(m: re.Match) -> str:
    # Runs before the money and measure rules, which then read the number on its own.
    # "$84.20/bbl", "$10/seat": after an amount, "/" and a word is a rate.
    if m.group(1):
        return f" per {PER_UNITS[m.group(1)]}"
    return f" per {m.group(2)}" if re.search("[aeiouy]", m.group(2)) else m.group(0)


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
    if len(fraction) > 2 and not fraction[2:].strip("0"):
        fraction = fraction[:2]  # "$2.000", "$20.500": zeros past the cents say nothing
    if len(fraction) == 1:
        fraction += "0"  # "$20.5" is twenty dollars and fifty cents
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


# "US$5", "A$20", "HK$ 3": dollars of a named country.
_DOLLAR_COUNTRY = {"US": "U S", "A": "Australian", "AU": "Australian", "C": "Canadian", "CA": "Canadian",
                   "NZ": "New Zealand", "HK": "Hong Kong", "S": "Singapore", "SG": "Singapore"}
_COUNTRY = "|".join(sorted(_DOLLAR_COUNTRY, key=len, reverse=True))


_ARTICLE = re.compile(r"(?i:\b(?:a|an|the|this|that|its|their|his|her|our|your|my))\s+$")
_NOUN_AFTER = re.compile(r"\s+(?!(?:of|in|to|for|and|or|from|on|at|by|with|per|each|a|an|the|is|was|are|were|than|as|"
                         r"that|which|more|less|over|under|a year|a month|a day)\b)[A-Za-z]")


def _attributive(m: re.Match) -> bool:
    """'a $1.2 billion lawsuit', 'the 8GB model': an amount between an article and its noun, said in the singular."""
    return bool(_ARTICLE.search(m.string, max(0, m.start() - 8), m.start()) and _NOUN_AFTER.match(m.string, m.end()))


@_sub(rf"(?<![\w$€£¥₹₩₽₿])(-)?(?:(?P<country>{_COUNTRY})\s?(?=\$))?({_CURRENCY})\s?({NUM})(?:\s?[-–]\s?({NUM}))?(?:\s?({_MAGNITUDE})(?![\w]))?", needs='$€£¥₹₩₽₿')
def _currency_before(m: re.Match) -> str:
    said = _money(m.group(1), m.group(3), *m.group(4, 5, 6))
    if m.group(6) and not m.group(5) and _attributive(m):
        one, many = CURRENCIES[m.group(3)][:2]
        said = said[: -len(many)] + one if said.endswith(" " + many) else said
    if m.group("country"):
        head, _, currency = said.rpartition(" dollar")
        said = f"{head} {_DOLLAR_COUNTRY[m.group('country')]} dollar{currency}"
    return said


@_sub(rf"{_START}(-)?({NUM})(?:\s?({_MAGNITUDE}))?\s?({_CURRENCY})(?![\w])", needs='$€£¥₹₩₽₿')
def _currency_after(m: re.Match) -> str:
    return _money(m.group(1), m.group(4), m.group(2), None, m.group(3))


@_sub(rf"{_START}({NUM})\s?¢", needs='¢')
def _cents(m: re.Match) -> str:
    return f"{amount(m.group(1))} {'cent' if _is_one(m.group(1)) else 'cents'}"


@_sub(r"(?<=\d)\s?[x×]\s?(?=\d)", needs='x×')
def _by(m: re.Match) -> str:
    # Before the measures, so that "2x8 m2" reads its unit: two by eight square meters.
    return " by " if m.group(0).strip() == "x" else " times "


# --- measures: units, percent, feet and inches ------------------------------------------------

_UNIT = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_PER = "|".join(re.escape(u) for u in sorted(PER_UNITS, key=len, reverse=True))


@_sub(r"(?<![\w.])(\d{1,2})'\s?(\d{1,2})(?:\"|'')", needs="'")
def _feet_inches(m: re.Match) -> str:
    feet, inches = m.group(1), m.group(2)
    return (f"{nw.number(feet)} {'foot' if _is_one(feet) else 'feet'} "
            f"{nw.number(inches)} {'inch' if _is_one(inches) else 'inches'}")


_QUOTES: list = [None, 0, 0]  # the text last counted in, up to where, and the quotes seen


def _quote_count(text: str, end: int) -> int:
    """Quotes in text[:end], counted on from the last call on the same text (one sub's matches come in order)."""
    if _QUOTES[0] is not text or _QUOTES[1] > end:
        _QUOTES[:] = [text, 0, 0]
    if end == len(text):
        return _QUOTES[2] + text.count('"', _QUOTES[1])
    _QUOTES[2] += text.count('"', _QUOTES[1], end)
    _QUOTES[1] = end
    return _QUOTES[2]


@_sub(r"(?<=\d)\"(?P<noun>[\s-]+(?=[A-Za-z]))?", needs='"')
def _inch(m: re.Match) -> str:
    # '10" skillet', 'a 14" display': an inch mark, unless the quote closes a quotation
    # (an even count of quotes before it, all of them paired).
    if _quote_count(m.string, m.start()) % 2 and _quote_count(m.string, len(m.string)) % 2 == 0:
        return m.group(0)
    if m.group("noun"):
        return " inch "  # a size before a noun: "a ten inch skillet"
    digits = re.search(r"[\d.,/ ]*$", m.string[max(0, m.start() - 12) : m.start()]).group(0).strip()
    return " inch" if digits == "1" else " inches"


_FRAC = r"\d+\s\d{1,2}/\d{1,2}|\d{1,2}/\d{1,2}"


def _fraction_amount(text: str) -> tuple[str, bool]:
    """'4 1/2' -> ('four and a half', True); '1/2' -> ('half a', False): words and whether plural."""
    whole, _, rest = text.rpartition(" ")
    numerator, denominator = (int(x) for x in rest.split("/"))
    if not 0 < numerator < denominator:
        return f"{nw.cardinal(numerator)} over {nw.cardinal(denominator)}", True
    part = _fraction(numerator, denominator)
    if whole:
        return f"{nw.number(whole)} and " + ("a " + part.split(" ", 1)[1] if numerator == 1 else part), True
    if numerator == 1:
        return ("half a" if denominator == 2 else f"a {part.split(' ', 1)[1]} of a"), False
    return f"{part} of a", False


@_sub(rf"{_START}(-)?(?P<low>{_FRAC}|{NUM})(?:\s?(?:-|–|to)\s?(-)?(?P<high>{NUM}))?(?:\s(?P<mag>thousand|million|billion|trillion))?"
      rf"(?P<space>\s?)(?P<unit>{_UNIT})(?:\^?(?P<power>[23]))?(?:/(?P<per>{_PER}))?(?![\w°/])(?:\.(?=\s+[a-z]))?")
def _measure(m: re.Match) -> str:
    unit, per, power = m.group("unit"), m.group("per"), m.group("power")
    if m.group(0).endswith(".") and len(unit) == 1:
        return m.group(0)  # "5 m. away": too short to be sure the period is the unit's
    if unit == "s" and m.group("space") and not per and not m.group("high") and _is_year(m.group("low")) and m.group("low").endswith("0"):
        return nw.plural_words(nw.year(int(m.group("low"))))  # "1980 s": a decade typed with a space
    if unit in ("s", "B") and not m.group("space") and not per:
        # "5s", "2B" are as often decades or magnitudes as units: leave to later rules.
        return m.group(0)
    if power and unit not in LENGTHS:
        return m.group(0)
    low, high = m.group("low"), m.group("high")
    singular, plural = UNITS[unit]
    if power:
        square = "square " if power == "2" else "cubic "
        singular, plural = square + singular, square + plural
    if "/" in low:
        if high:
            return m.group(0)
        said, many = _fraction_amount(low)
        return f"{said} {plural if many else singular}" + (f" per {PER_UNITS[per]}" if per else "")
    said = ("minus " if m.group(1) else "") + amount(low)
    if high:
        said += " to " + ("minus " if m.group(3) else "") + amount(high)
    if m.group("mag"):
        said += " " + m.group("mag")
    one = _is_one(low) and not high and not m.group("mag")
    said += " " + (singular if one or (not per and unit != "%" and _attributive(m)) else plural)
    if per:
        said += " per " + PER_UNITS[per]
    return said


# --- ordinals, decades, fractions, ranges, years ----------------------------------------------


@_sub(r"(?<![\w/.,])\d+(?:/\d+){2,}(?![\w/]|\.\d)", needs="/")
def _slashed(m: re.Match) -> str:
    # "31/31/100", "123/261788/2021": not a date (read above), so a code; long parts digit by digit.
    return " slash ".join(nw.number(p) if len(p) <= 4 else nw.digits(p) for p in m.group(0).split("/"))


@_sub(r"(?<![\w/.,])(\d+)/(\d+)(?i:st|nd|rd|th)\b", needs="/")
def _ordinal_fraction(m: re.Match) -> str:
    # "1/4th", "1/3RD": the suffix only repeats the denominator's reading.
    return _fraction(int(m.group(1)), int(m.group(2)))


def _suffix(n: int) -> str:
    if 11 <= n % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


@_sub(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(st|nd|rd|th|ST|ND|RD|TH)\b", near=r"\d(?:st|nd|rd|th|ST|ND|RD|TH)")
def _ordinal(m: re.Match) -> str:
    value = nw.integer(m.group(1))
    if value is not None and _suffix(value) != m.group(2).lower():
        # "4rd", "11st": not an ordinal as written (a typo, "11 st" a street or a stone); say what is there.
        return f"{nw.number(m.group(1))} {' '.join(m.group(2))}"
    return nw.ordinal_words(nw.number(m.group(1)))


# Words before "30s" that make it a decade ("the 30s", "in her 30s", "mid-80s"); without one,
# a two-digit number glued to "s" is a duration ("a timeout of 30s").
_DECADE_CUE = re.compile(r"(?i:\b(?:the|their|his|her|my|your|our|its|early|mid|late)[\s-]+|\d0s,?\s+(?:and|or|to|through)\s+)$")


@_sub(r"(?<![\w.,'])('?)(\d{2}|1\d{3}|20\d{2})('?)s\b", needs='s', near=r"\d'?s")
def _decade(m: re.Match) -> str:
    value = int(m.group(2))
    if len(m.group(2)) == 2 and not (m.group(1) or m.group(3)):
        before = m.string[max(0, m.start() - 16) : m.start()]
        if not _DECADE_CUE.search(before) and not before.endswith("-"):
            return _unit(value, "second")
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
    if whole is not None and denominator == 1:
        # "2 142/1": nobody says "firsts"; the parts as written.
        return f"{nw.cardinal(whole)} and {nw.cardinal(numerator)} over {nw.cardinal(denominator)}"
    if whole is None or not 0 < numerator < denominator <= 100:
        return m.group(0)
    part = _fraction(numerator, denominator)
    if numerator == 1:
        part = "a " + part.split(" ", 1)[1]
    return f"{nw.cardinal(whole)} and {part}"


@_sub(r"(?<![\w/.,])(\d+)(?:/| / )(\d+)(?![\w/]|\.\d)", needs='/')
def _simple_fraction(m: re.Match) -> str:
    numerator, denominator = nw.integer(m.group(1)), nw.integer(m.group(2))
    if numerator is None or denominator is None or denominator == 1:
        return f"{nw.number(m.group(1))} over {nw.number(m.group(2))}"
    if numerator == denominator and denominator in (5, 10, 100):
        return f"{nw.number(m.group(1))} out of {nw.number(m.group(2))}"  # "10/10": a rating
    if denominator and (denominator <= 10 or numerator < denominator <= 1000) and (numerator, denominator) != (24, 7):
        return _fraction(numerator, denominator)
    if numerator == denominator and denominator in (5, 10, 100):
        return f"{nw.number(m.group(1))} out of {nw.number(m.group(2))}"  # "10/10": a rating
    if numerator == denominator or (numerator, denominator) == (24, 7):
        return f"{nw.number(m.group(1))} {nw.number(m.group(2))}"
    return f"{nw.number(m.group(1))} over {nw.number(m.group(2))}"


_EQUALS = re.compile(r"\s*=")


def _is_year(text: str) -> bool:
    return len(text) == 4 and text.isdigit() and 1000 <= int(text) <= 2099


@_sub(rf"(?<![\w.,-])({NUM})-({NUM})(?![\w-]|\.\d)", needs='-')
def _range(m: re.Match) -> str:
    low, high = m.group(1), m.group(2)
    if _EQUALS.match(m.string, m.end()):
        return f"{amount(low)} minus {amount(high)}"  # "1-2=5" is arithmetic
    if _is_year(low) and (_is_year(high) or len(high) == 2):
        return f"{nw.year(int(low))} to " + (nw.year(int(high)) if len(high) == 4 else nw.cardinal(int(high)))
    return f"{amount(low)} to {amount(high)}"


# Words after which a four-digit number is a year: "in 1999", "since 1066", "the year 2012".
_YEAR_CUE = re.compile(
    r"(?i:\b(?:in|since|from|until|till|to|by|of|year|circa|around|before|after|during|early|late|mid|"
    r"summer|spring|autumn|fall|winter|between|through|and|or|c\.|ca\.|born|died|founded|established|est\.))\s+$"
)
_ERA = re.compile(r"\s?(?:BC|AD|BCE|CE|B\.C\.?|A\.D\.?)(?!\w)")


# A plural noun after the number makes it a count ("1500 people"), unless a cue says year.
_COUNTED = re.compile(r"\s+[a-z]{2,}[^s\W]*s\b")
_CALCULATION = re.compile(r"[=+*×÷^<>/-]\s*$")


@_sub(rf"(?<![\w.,])([1-9]\d\d)(?={_ERA.pattern})", near=r"\d\s?(?:BC|AD|CE|B\.C|A\.D)")
def _era_year(m: re.Match) -> str:
    # "340 AD", "410 BC": a three-digit year is said in pairs ("three forty").
    return pairs(m.group(1))


@_sub(r"(?<![\w.,])(1\d\d\d|20\d\d)(?!\w|[,.]\d)", near=r"[12]\d{3}")
def _year(m: re.Match) -> str:
    # The cue is checked on the text just before the digits: a pattern anchored on the
    # digits is far cheaper than one that tries every word of the text as a cue.
    before = m.string[max(0, m.start() - 16) : m.start()]
    value = int(m.group(1))
    if _YEAR_CUE.search(before) or _ERA.match(m.string, m.end()):
        return nw.year(value)
    # With no cue, a four-digit number from 1100 to 2099 is still most often a year ("In 1994,",
    # "the 1994 season"), unless it is round, counts something, or stands in a calculation.
    if value < 1100 or value % 1000 == 0 or _COUNTED.match(m.string, m.end()) or _CALCULATION.search(before):
        return m.group(0)
    return nw.year(value)


@_sub(r"(?:^|(?<=[.!?]\s)|(?<=^[\"(]))(1[1-9]\d\d|20\d\d)(?=\s(?:was|is|saw|had|marked|brought|will|began|ended|became)\b)", near=r"\d\s(?:was|is|saw|had|marked|brought|will|began|ended|became)\b")
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


@_sub(r"(?<![\w.])(\d+(?:\.\d+)?)x(?!\w)", needs='x', near=r"\dx")
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


@_sub(r"(?<=\d)(?:\s+[-−]\s*|[-−]\s+)(?=\d)", needs='-−')
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


# Words after which "3.12" is a version, its parts said as numbers: "Python 3.12" is "three point twelve".
_VERSION_CUE = re.compile(
    r"\b(?:[Vv]ersion|[Vv]er\.|[Rr]elease|[Pp]ython|Kubernetes|[Nn]ode|Node\.js|i O S|iPadOS|mac O S|Android|Ubuntu|"
    r"Debian|Fedora|Java|JDK|PHP|Perl|Ruby|Rust|Go|Swift|Kotlin|TypeScript|GCC|Clang|LLVM|CUDA|PyTorch|TensorFlow|"
    r"Django|Rails|React|Vue|Angular|NumPy|numpy|pandas|Firefox|Chrome|Linux|[Kk]ernel|Electron|Unity|Blender|"
    r"Postgres|PostgreSQL|MySQL|Redis|Elasticsearch|Xcode|Gradle|Terraform|Docker|Helm)\s$"
)


@_sub(r"(?<![\w.])([vV])?(\d+)\.(\d{2,})(?![\d.\w]|\s?%)", needs=".", near=r"\d\.\d\d")
def _two_part_version(m: re.Match) -> str:
    if not m.group(1) and not _VERSION_CUE.search(m.string, max(0, m.start() - 16), m.start()):
        return m.group(0)
    said = f"{nw.number(m.group(2))} point {nw.number(m.group(3))}"
    return ("version " if m.group(1) else "") + said


@_sub(r"(?<![\w.])[vV](?=\d+(?:\.\d+)+(?![\d.]))", needs="vV", near=r"[vV]\d")
def _version(m: re.Match) -> str:
    return "version "


@_sub(rf"{_START}({NUM})(M|MM|mn|bn|B|[kK](?=\+?\s+[a-z]{{3,}}s\b))(?!\w)", needs="MmBkK", near=r"\d(?:M|mn|bn|B|[kK])")
def _magnitude(m: re.Match) -> str:
    # "1.5M users", "2bn": million and billion; "B" after a whole number stays a letter ("Apt 4B").
    # "K" means thousand before a count ("500K vehicles", "10k requests"), but a single digit
    # and K is a name ("4K videos", "a 5K run").
    if m.group(2) == "B" and "." not in m.group(1):
        return m.group(0)
    if m.group(2) in "kK" and len(m.group(1)) == 1:
        return m.group(0)
    return f"{amount(m.group(1))} {MAGNITUDES[m.group(2)]}"


def _spaced(m: re.Match, said: str) -> str:
    """`said` with a space on each side that touches a letter ("v2" is not "vtwo")."""
    text = m.string
    before = " " if m.start() and text[m.start() - 1].isalpha() else ""
    after = " " if m.end() < len(text) and text[m.end()].isalpha() else ""
    return before + said + after


@_sub(r"(?<![\d.])\d+(?:\.\d+){2,}(?![\d.])", near=r"\d\.\d+\.\d")
def _dotted_number(m: re.Match) -> str:
    parts = m.group(0).split(".")
    if len(parts) == 4:  # an IP address: each part digit by digit, as people read them out
        return _spaced(m, " dot ".join(nw.digits(p) for p in parts))
    return _spaced(m, " point ".join(nw.number(p) for p in parts))  # a version


@_sub(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d*\.\d+|\d+")
def _plain_number(m: re.Match) -> str:
    return _spaced(m, amount(m.group(0)))


def expand_numbers(text: str) -> str:
    """Replace every written form with digits by its words; the result holds no ASCII digit."""
    has_digit = _DIGIT.search(text) is not None
    found: dict[str, bool] = {}
    for pattern, function, needs_digit, needs, guard, nearby in _RULES:
        if (has_digit or not needs_digit) and (not needs or any(ch in text for ch in needs)):
            if guard is not None:
                if guard not in found:  # checked on the text as the first rule of the guard sees it
                    found[guard] = _GUARDS[guard].search(text) is not None
                if not found[guard]:
                    continue
            if nearby is not None and nearby.search(text) is None:
                continue
            text = pattern.sub(function, text)
    return text


_DIGIT = re.compile(r"\d")
