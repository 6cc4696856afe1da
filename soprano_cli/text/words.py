"""Written forms made of letters and symbols: web addresses, abbreviations, Roman numerals, acronyms."""

from __future__ import annotations

import re

from soprano_cli.text import numbers as nw
from soprano_cli.text.contacts import EMAIL, URL
from soprano_cli.text.vocab import (
    ABBREVIATIONS,
    AFTER_NAME,
    CAPS_WORDS,
    CHAT,
    CHAT_LOWER_ONLY,
    DOTTED,
    NUMBER_ABBREVIATIONS,
    REGNAL_NAMES,
    ROMAN_CUES,
    SAID_AS_WORDS,
    SPECIAL_WORDS,
    SPELLED,
    STARTERS,
    TITLES,
    TLDS,
)


# Matched at a position rather than on a slice: slicing the rest of the text once per
# abbreviation made a line dense with them quadratic in its length.
_ONLY_SPACE = re.compile(r"\s*\Z")
_NEXT_WORD = re.compile(r"\s+[\"'(\[]*([A-Z][a-z]*)")
_FOLLOWING = re.compile(r"[\"']?([A-Z][a-z]*)")
_CAPITALIZED = re.compile(r"[A-Z][a-z]*")
_NAMED = re.compile(r"\b[A-Z0-9][\w'-]*\s+$")  # a name (or house number) just before


def _keep_period(text: str, end: int) -> str:
    """'.' when the abbreviation ending at `end` also ends the sentence."""
    if _ONLY_SPACE.match(text, end):
        return "."
    match = _NEXT_WORD.match(text, end)
    return "." if match and match.group(1) in STARTERS else ""


# --- web addresses --------------------------------------------------------------------------

_SEPARATORS = {".": "dot", "/": "slash", "-": "dash", "_": "underscore", ":": "colon",
               "?": "question mark", "=": "equals", "&": "ampersand", "#": "hash", "@": "at",
               "~": "tilde", "+": "plus", "%": "percent"}


def _spell_address(text: str) -> str:
    words = []
    for part in re.findall(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]", text):
        if part.isdigit():
            # In an address a number is a label, read digit by digit, unless it is one digit
            # or round ("rtx-6000" is six thousand).
            round_number = len(part) >= 3 and part.endswith("00") and not part.startswith("0")
            words.append(nw.number(part) if len(part) == 1 or round_number else nw.digits(part))
        elif part in _SEPARATORS:
            words.append(_SEPARATORS[part])
        elif part.isalpha():
            words.append(" ".join(part.upper()) if part.lower() == "www" else part)
    return " ".join(words)


_URL = re.compile(URL)
_FILE_URL = re.compile(r"\bfile:///?[^\s<>\"']+", re.IGNORECASE)
# "intro.html", "test.abc": lower-case words joined by a period with no space are a file or
# host name, not two sentences ("p.m.est" is a time and its zone).
_FILE_NAME = re.compile(r"(?<![\w@./-])(?![ap]\.m\.)[a-z][a-z\d_-]*(?:\.[a-z\d_-]+)*\.[a-z]{2,4}(?![\w@]|\.\w)")
_EMAIL = re.compile(EMAIL)
_TLD = "|".join(sorted(TLDS, key=len, reverse=True))
# No start after '-': from each label of 'a-a-a-…' the pattern scanned to the end of the run.
_DOMAIN = re.compile(rf"(?<![\w@.-])[A-Za-z\d][A-Za-z\d-]*(?:\.[A-Za-z\d-]+)*\.(?:{_TLD})(?:/[^\s<>\"']*)?(?![\w@])")


_SCHEME = re.compile(r"(https?)://", re.IGNORECASE)


def _split_tail(url: str) -> tuple[str, str]:
    """The address and the punctuation after it (rstrip: a regex search for the tail is quadratic)."""
    bare = url.rstrip(".,;:!?)]")
    return bare, url[len(bare):]


def _url(match: re.Match, url: str | None = None) -> str:
    url = match.group(0) if url is None else url
    url, tail = _split_tail(url)
    # The scheme is said as written ("H T T P S colon slash slash"), as a careful reader
    # reads an address aloud; a trailing slash is not said.
    scheme = _SCHEME.match(url)
    said = ""
    if scheme:
        said = " ".join(scheme.group(1).upper()) + " colon slash slash "
        url = url[scheme.end():]
    return said + _spell_address(url.rstrip("/")) + tail


def _email(match: re.Match) -> str:
    domain = match.group(0).rpartition("@")[2].split("/")[0]
    if not any(ch.isalpha() for ch in domain.rpartition(".")[2]):
        return match.group(0)  # "react@18.2.0": a package at a version, not an address
    return _spell_address(match.group(0))


def expand_addresses(text: str) -> str:
    """URLs, e-mail addresses and bare domain names, spoken."""
    if "@" in text:
        text = _EMAIL.sub(_email, text)
    if "." in text:
        if "file:" in text:
            text = _FILE_URL.sub(lambda m: "file colon slash slash " + _url(m, m.group(0).split("//", 1)[1]), text)
        text = _URL.sub(_url, text)
        text = _DOMAIN.sub(_url, text)
        text = _FILE_NAME.sub(_url, text)
    return text


# --- abbreviations --------------------------------------------------------------------------

_DOTTED = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in DOTTED) + r")(?!\w)", re.IGNORECASE)
_TITLE = re.compile(r"\b(" + "|".join(TITLES) + r")(\.|\b)(\s+)(?=[\"']?[A-Z])")
_AFTER_NAME = re.compile(r"\b(" + "|".join(AFTER_NAME) + r")\.")
_ABBREVIATION = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.(?!\w)")
_VERSUS = re.compile(r"\bvs\b\.?")
_NUMBERED = re.compile(r"\b(" + "|".join(NUMBER_ABBREVIATIONS) + r")\.\s?(?=#?\d)")
_WITH = re.compile(r"(?<![\w/])w/(o\b)?\s?(?=\w)")


def _title(match: re.Match) -> str:
    name, period, space = match.groups()
    following = _FOLLOWING.match(match.string, match.end())
    if period and following and following.group(1) in STARTERS and name in AFTER_NAME and _NAMED.search(
            match.string, max(0, match.start() - 40), match.start()):
        return match.group(0)  # "Baker St. The ..." is a street, handled below; "met Dr. Who" is a doctor
    if not period and name not in ("Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Mt", "Messrs", "Mme"):
        return match.group(0)
    return TITLES[name] + space


# Not inside a spelled address ("a dot bc at gmail dot com"), which a second pass reads again.
_CHAT = re.compile(r"(?<![\w'’/.@#-])(?<!dot )(" + "|".join(sorted(
    [*CHAT, *(w.capitalize() for w in CHAT if w.isalpha()), *CHAT_LOWER_ONLY], key=len, reverse=True)).replace("/", r"\/")
    + r")(?![\w'’/@-]|\.\w| dot | at [\w ]{1,80}? dot )")
_YOU = re.compile(r"\s+(?:u|you|we|they|ya)\b")


def _chat(match: re.Match) -> str:
    word = match.group(1)
    if word == "r" and not _YOU.match(match.string, match.end()):
        return word  # "r u coming": only next to a pronoun is a lone "r" the verb
    said = CHAT.get(word) or CHAT.get(word.lower()) or CHAT_LOWER_ONLY[word]
    return said[0].upper() + said[1:] if word[0].isupper() else said


def expand_abbreviations(text: str) -> str:
    """Titles, Latin abbreviations, chat shorthand and the like, read in full."""
    # Mixed-case and digit-bearing forms ("PhD", "WWII", "401(k)"), before the numbers rules see them.
    text = _SPECIAL.sub(lambda m: SPECIAL_WORDS[m.group(1)], text)
    text = _CHAT.sub(_chat, text)
    if "/" in text:
        text = _WITH.sub(lambda m: "without " if m.group(1) else "with ", text)
    text = _VERSUS.sub("versus", text)
    if "." not in text and not any(t in text for t in ("Mr", "Ms", "Dr", "St")):
        return text
    text = _DOTTED.sub(lambda m: DOTTED[m.group(1).lower()] + _keep_period(m.string, m.end()), text)
    text = _NUMBERED.sub(lambda m: NUMBER_ABBREVIATIONS[m.group(1)] + " ", text)
    text = _TITLE.sub(_title, text)
    text = _AFTER_NAME.sub(lambda m: AFTER_NAME[m.group(1)] + _keep_period(m.string, m.end()), text)
    return _ABBREVIATION.sub(lambda m: ABBREVIATIONS[m.group(1)] + _keep_period(m.string, m.end()), text)


# --- Roman numerals -------------------------------------------------------------------------

_ROMAN_VALID = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_ROMAN = re.compile(r"\b([A-Z][a-z]+|[A-Z]{2,})(\s+)([IVXLCDM]+)\b(?!['’.]\w)(?=(\s+[a-z])?)")
_NOT_NAMES = {"The", "A", "An", "And", "Or", "But", "In", "On", "At", "To", "Of", "For", "With",
              "By", "From", "As", "Is", "Was", "Are", "If", "So", "Then", "When", "That", "This",
              "Not", "No", "Yes", "Do", "Did", "Have", "Has", "Where", "What", "Who", "Why", "How"}


def roman_value(text: str) -> int:
    """'XIV' -> 14 (0 when `text` is not a well-formed numeral)."""
    if not text or not _ROMAN_VALID.fullmatch(text):
        return 0
    total = 0
    for ch, nxt in zip(text, text[1:] + " "):
        value = _ROMAN_VALUES[ch]
        total += -value if nxt != " " and _ROMAN_VALUES[nxt] > value else value
    return total


def _roman(match: re.Match) -> str:
    word, space, numeral, lowercase_next = match.groups()
    value = roman_value(numeral)
    if word.isupper():  # "PART XL": only a cue word in capitals makes a number
        return f"{word}{space}{nw.cardinal(value)}" if value and word.capitalize() in ROMAN_CUES else match.group(0)
    if not value or word in _NOT_NAMES:
        return match.group(0)
    if word in REGNAL_NAMES and set(numeral) <= set("IVX") and not (numeral == "I" and lowercase_next):
        return f"{word}{space}the {nw.ordinal(value)}"
    if word in ROMAN_CUES and not (numeral == "I" and lowercase_next):
        return f"{word}{space}{nw.cardinal(value)}"
    if len(numeral) >= 2 and set(numeral) <= set("IVX"):
        return f"{word}{space}{nw.cardinal(value)}"
    return match.group(0)


def expand_roman(text: str) -> str:
    """Roman numerals after a cue word or a regnal name: 'World War II', 'Louis XIV'."""
    return _ROMAN.sub(_roman, text)


# --- acronyms -------------------------------------------------------------------------------

_DOTTED_CAPS = re.compile(r"(?<![\w.])((?:[A-Za-z]\.){2,})(?!\w)")
_INITIAL = re.compile(r"(?<![\w.])([A-Z])\.(\s+)(?=[A-Z])")
_CAPS = re.compile(r"(?<![\w'’.-])([A-Z]{2,5})(s?)(?=['’]s\b|(?![\w'’-]|\.\w))")
# "MAX_WORKERS", "API_KEY": a constant's name, its parts said as words or letters.
_IDENTIFIER = re.compile(r"(?<![\w.-])[A-Z][A-Z\d]*(?:_[A-Z\d]+)+(?![\w.-])")
_JS = re.compile(r"\b([A-Z][A-Za-z\d]*)\.js\b")  # "Node.js", "Vue.js"


def _identifier(match: re.Match) -> str:
    parts = match.group(0).split("_")
    return " ".join(part.lower() if len(part) >= 3 and re.search("[AEIOU]", part) else part for part in parts)
_SPECIAL = re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in SPECIAL_WORDS) + r")(?!\w)")


def _dotted_caps(match: re.Match) -> str:
    letters = match.group(1).replace(".", "")
    return " ".join(letters.upper()) + _keep_period(match.string, match.end())


def _initial(match: re.Match) -> str:
    following = _CAPITALIZED.match(match.string, match.end())
    if following and following.group(0) in STARTERS:
        return match.group(0)
    return match.group(1) + match.group(2)


def _caps(match: re.Match) -> str:
    word, plural = match.groups()
    if word in SAID_AS_WORDS or (word in CAPS_WORDS and not plural and word not in SPELLED):
        return match.group(0)
    if word not in SPELLED and len(word) == 5 and re.search("[AEIOU]", word):
        return match.group(0)  # long enough to be a word in capitals
    return " ".join(word) + plural


_AMPERSAND = re.compile(r"\b([A-Z]{1,3})&([A-Z]{1,3})\b")


def expand_acronyms(text: str) -> str:
    """Acronyms said letter by letter: 'FBI' -> 'F B I', 'U.S.' -> 'U S', 'AT&T' -> 'A T and T'."""
    if "_" in text:
        text = _IDENTIFIER.sub(_identifier, text)
    if ".js" in text:
        text = _JS.sub(r"\1 J S", text)
    if "&" in text:
        text = _AMPERSAND.sub(lambda m: " ".join(m.group(1)) + " and " + " ".join(m.group(2)), text)
    if "." in text:
        text = _DOTTED_CAPS.sub(_dotted_caps, text)
        text = _INITIAL.sub(_initial, text)
    return _CAPS.sub(_caps, text)
