"""Pauses and a small SSML subset: marked-up text -> plain text pieces and the pauses between them.

Two markups, both pure str -> pieces:
- `[pause:1.5s]` / `[pause:500ms]` tags, in any text. A tag that does not match (`[pause:soon]`) is
  text and is spoken as written.
- SSML, when the text (after leading blanks) starts with `<speak` (or `<?xml`, `<!DOCTYPE`): `<break time= strength=>`,
  `<p>`, `<s>`, `<sub alias=>`, `<say-as interpret-as="characters|cardinal|ordinal|date|telephone">`.
  Other elements (prosody, emphasis, phoneme, ...) are ignored and their text is spoken. A document
  that is not well-formed XML, declares a DTD or entities, or has a bad break time is rejected with
  a `MarkupError`: it was meant as markup, and speaking its tags aloud helps no one.

A pause, and the edge of `<p>` and `<s>`, ends a sentence: the text on either side is spoken as
separate sentences, so the silence falls between them and the engine's batching is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from soprano_cli.errors import InputTextError

MAX_PAUSE_SECONDS = 10.0  # one tag or break; longer is surely a typo (and cheap silence to ask a server for)
MAX_SSML_CHARS = 1_000_000  # a whole document is read before it is parsed
# SSML 1.1's break strengths (seconds are ours; the spec leaves them to the processor).
BREAK_STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 1.0, "x-strong": 2.0}
SAY_AS = ("characters", "spell-out", "cardinal", "number", "ordinal", "date", "telephone")

PAUSE_TAG = re.compile(r"\[pause:\s*(\d{1,6}(?:\.\d{1,6})?)\s*(ms|s)?\s*\]", re.IGNORECASE)
_TIME = re.compile(r"\s*(\d{1,6}(?:\.\d{1,6})?)\s*(ms|s)\s*", re.IGNORECASE)


class MarkupError(InputTextError):
    """SSML that cannot be read, or a pause outside its limits."""

    error_code = "invalid_markup"


@dataclass(frozen=True)
class Pause:
    """Silence between sentences; 0 seconds is a sentence boundary only (`<s>`, `<p>`)."""

    seconds: float


def is_ssml(text: str) -> bool:
    """Whether `text` is an SSML document: it opens `<speak`, or an XML declaration or DOCTYPE (then checked)."""
    return text.lstrip().startswith(("<speak", "<?xml", "<!DOCTYPE"))


def pieces(lines: Iterable[str]) -> Iterator[str | Pause]:
    """Text lines and `Pause`s from input lines: an SSML document is read whole, other lines one at a time."""
    lines = iter(lines)
    for line in lines:
        if not line.strip():
            yield line
            continue
        if is_ssml(line):
            yield from ssml_pieces("\n".join(_bounded([line], lines)))
            return
        yield from tag_pieces(line)
        yield from (piece for rest in lines for piece in tag_pieces(rest))
        return


def rendered_lines(lines: Iterable[str], say) -> Iterator[str]:
    """`soprano normalize`'s output: text through `say` (str -> str), every pause as a `[pause:Ns]` tag.

    SSML comes out as plain text with tags (`<p>`/`<s>` edges as `[pause:0s]`), so `synth` speaks
    the normalized text with the same sentences and pauses as the document.
    """
    lines = iter(lines)
    for line in lines:
        if not line.strip():
            yield say(line)
            continue
        if is_ssml(line):
            out = ""
            for piece in ssml_pieces("\n".join(_bounded([line], lines))):
                out += _tag(piece) if isinstance(piece, Pause) else "\n".join(
                    say(part) for part in piece.split("\n"))
            yield from (line.strip() for line in out.split("\n"))
            return
        yield _rendered(line, say)
        yield from (_rendered(rest, say) for rest in lines)
        return


def _rendered(line: str, say) -> str:
    return "".join(_tag(piece) if isinstance(piece, Pause) else say(piece) for piece in tag_pieces(line)).strip()


def _tag(pause: Pause) -> str:
    return f" [pause:{pause.seconds:g}s] "


def _bounded(first: list[str], rest: Iterator[str]) -> Iterator[str]:
    size = 0
    for line in (*first, *rest):
        size += len(line) + 1
        if size > MAX_SSML_CHARS:
            raise MarkupError(f"the SSML document is longer than {MAX_SSML_CHARS} characters")
        yield line


def tag_pieces(text: str) -> Iterator[str | Pause]:
    """`text` cut at its `[pause:...]` tags."""
    position = 0
    for match in PAUSE_TAG.finditer(text):
        yield text[position:match.start()]
        yield Pause(_seconds(match.group(1), match.group(2) or "s", match.group(0)))
        position = match.end()
    yield text[position:]


def _seconds(number: str, unit: str, written: str) -> float:
    seconds = float(number) / (1000 if unit.lower() == "ms" else 1)
    if seconds > MAX_PAUSE_SECONDS:
        raise MarkupError(f"pause {written!r} is longer than {MAX_PAUSE_SECONDS:g} seconds")
    return seconds


def strip_tags(text: str) -> str:
    """`text` with its pause tags removed (what is left to say)."""
    return PAUSE_TAG.sub(" ", text)


# -- SSML ------------------------------------------------------------------------------------------


def ssml_pieces(document: str) -> list[str | Pause]:
    """Text and pauses of an SSML document (see the module docstring); MarkupError if it cannot be read."""
    import xml.etree.ElementTree as ElementTree

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    if len(document) > MAX_SSML_CHARS:
        raise MarkupError(f"the SSML document is longer than {MAX_SSML_CHARS} characters")
    try:
        root = fromstring(document, forbid_dtd=True)
    except ElementTree.ParseError as error:
        raise MarkupError(f"the SSML is not well-formed XML: {error}") from None
    except DefusedXmlException:
        raise MarkupError("the SSML may not declare a DTD or entities") from None
    if _name(root) != "speak":
        raise MarkupError(f"the SSML's root element is <{_name(root)}>; it must be <speak>")
    out: list[str | Pause] = []
    _walk(root, out, depth=0)
    merged: list[str | Pause] = []  # "<say-as>12</say-as>." is one text: its period ends that sentence
    for piece in out:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged


def _name(element) -> str:
    return element.tag.rpartition("}")[2] if isinstance(element.tag, str) else ""  # drop a namespace


def _walk(element, out: list, depth: int) -> None:
    if depth > 100:
        raise MarkupError("the SSML is nested more than 100 elements deep")
    name = _name(element)
    if name == "break":
        out.append(Pause(_break_seconds(element)))
    elif name == "sub":
        out.append(element.get("alias", element.text or ""))
    elif name == "say-as":
        out.append(say_as("".join(element.itertext()), element.get("interpret-as", ""), element.get("format")))
    else:
        boundary = name in ("p", "s", "paragraph", "sentence")
        if boundary:
            out.append(Pause(0.0))
        if element.text:
            out.append(element.text)
        for child in element:
            _walk(child, out, depth + 1)
        if boundary:
            out.append(Pause(0.0))
    if element.tail:
        out.append(element.tail)


def _break_seconds(element) -> float:
    time = element.get("time")
    if time is not None:
        match = _TIME.fullmatch(time)
        if not match:
            raise MarkupError(f"break time {time!r} is not a duration like '500ms' or '1.5s'")
        return _seconds(match.group(1), match.group(2), time)
    strength = element.get("strength", "medium")
    if strength not in BREAK_STRENGTHS:
        raise MarkupError(f"break strength {strength!r} is not one of {', '.join(BREAK_STRENGTHS)}")
    return BREAK_STRENGTHS[strength]


# -- say-as: the text front end's own readers -------------------------------------------------------


def say_as(text: str, interpret_as: str, date_format: str | None = None) -> str:
    """`text` read as `interpret_as` says; text it cannot read that way (or an unknown kind) is left as written."""
    from soprano_cli.text import numbers

    kind = interpret_as.lower()
    plain = text.strip()
    if kind in ("characters", "spell-out"):
        return " ".join(numbers.digits(ch) if ch.isdigit() else ch.upper() for ch in plain if not ch.isspace())
    if kind in ("cardinal", "number") and re.fullmatch(r"-?\d[\d,]*", plain):
        value = numbers.integer(plain.lstrip("-"))
        return ("minus " if plain.startswith("-") else "") + (numbers.number(plain.lstrip("-")) if value is None
                                                              else numbers.cardinal(value))
    if kind == "ordinal" and (match := re.fullmatch(r"(\d{1,9})(?:st|nd|rd|th)?\.?", plain, re.IGNORECASE)):
        return numbers.ordinal(int(match.group(1)))
    if kind == "date":
        return _date(plain, (date_format or "mdy").lower()) or text
    if kind == "telephone" and re.fullmatch(r"\+?[\d\s().-]+", plain) and any(ch.isdigit() for ch in plain):
        groups = re.findall(r"\d+", plain)
        said = ", ".join(numbers.digits(group) for group in groups)
        return ("plus " + said) if plain.startswith("+") else said
    return text


def _date(text: str, date_format: str) -> str | None:
    """'12/25/2024' with format 'mdy' -> 'December twenty fifth, twenty twenty four' (None if not a date)."""
    from soprano_cli.text import numbers
    from soprano_cli.text.vocab import MONTH_NAMES

    parts = re.split(r"[-/.\s]+", text)
    if len(parts) != len(date_format) or not all(part.isdigit() for part in parts) or set(date_format) - set("dmy"):
        return None
    values = dict(zip(date_format, parts))
    month, day, year = values.get("m"), values.get("d"), values.get("y")
    if month is not None and not 1 <= int(month) <= 12 or day is not None and not 1 <= int(day) <= 31:
        return None
    said = " ".join(word for word in (MONTH_NAMES[int(month)] if month else None,
                                      numbers.ordinal(int(day)) if day else None) if word)
    if year is not None:
        spoken_year = numbers.year(int(year)) if len(year) == 4 else numbers.cardinal(int(year))
        said = f"{said}, {spoken_year}" if said else spoken_year
    return said
