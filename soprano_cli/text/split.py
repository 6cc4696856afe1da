"""Sentence segmentation and the chunks of one segment: `split_sentences`, `_chunks` (text.live builds `split` on them)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from soprano_cli.text.duration import estimate_seconds
from soprano_cli.text.vocab import AFTER_NAME, MONTHS, NUMBER_ABBREVIATIONS, STARTERS, TITLES

_OPENERS = "\"'([{“‘«¿¡"
_CLOSERS = "\"')]}”’»"
_TERMINAL = (".", "!", "?", "…", "‽")
# Abbreviations that are never the last word of a sentence.
_NEVER_FINAL = {"e.g", "i.e", "vs", "cf", "viz", "approx", "ca", "c", "resp", "incl", "esp"}
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")


# A run of spaced dots ("weakened . . . was"): 3 are an ellipsis inside the sentence, 4 end it.
_SPACED_DOTS = re.compile(r"(?: \.)+[\"'”’)\]]*$")
_DOTS = re.compile(r"\.+[\"'”’)\]]*")
# A list marker: "1.", "2)", "3.)", "a.", "•9.", "⁃10.".
_MARKER = re.compile(r"[•⁃]?(\d{1,2}|[a-z])(?:\.\)|\.|\))")
_BULLETS = ("•", "⁃", "-", "*")
_CLOCK_SUFFIX = {"a.m", "p.m"}


def _is_boundary(token: str, following: str, previous: str | None, position: int = 1) -> bool:
    """Whether a sentence ends after `token`, given the next token, the one before and the token's index in its sentence."""
    core = token.rstrip(_CLOSERS)
    if not core.endswith(_TERMINAL):
        return False
    word_next = following.lstrip(_OPENERS)
    first = word_next[:1]
    if first.islower():
        return False  # "e.g. the", "“Why?” he asked", "... and then"
    if token.rstrip("\"'”’").endswith(("[...]", "[…]")):
        return False  # an omission mark: "Bohr [...] used"
    dots = _SPACED_DOTS.search(token)
    if dots:
        return dots.group(0).count(".") >= 4  # ". . . ." is an ellipsis and the sentence's period
    if not core.endswith(".") or core.endswith(".."):
        return True
    word = core[:-1].lstrip(_OPENERS)
    next_word = re.match(r"[^\W\d_]*", word_next).group(0)
    if word in TITLES and word not in AFTER_NAME:
        return False  # "Mr. Smith"
    if word in AFTER_NAME:
        # "Elm Dr. Then" ends a sentence; "Dr. Who", "met Dr. Who" do not: a street has a name before it.
        named = previous is not None and previous[:1].isupper() and position > 0
        return next_word in STARTERS and named
    if word.lower() in _NEVER_FINAL:
        return False
    if first.isdigit() and (word in NUMBER_ABBREVIATIONS or word.lower() in MONTHS or word == "N°"):
        return False  # "No. 5", "Jan. 5"
    if word.lower() in _CLOCK_SUFFIX and position > 2 and next_word in TITLES:
        return True  # "He left at 6 P.M. Mr. Smith then ..." (but "At 5 a.m. Mr. Smith went")
    if "." in word or (len(word) == 1 and word.isalpha()):
        return next_word in STARTERS  # "U.S. Army" vs "the U.S. The", "J. Smith"
    if word.isdigit() and len(word) <= 2 and (previous is None or previous.rstrip(_CLOSERS).endswith((":",) + _TERMINAL)):
        return False  # a list item: "1. Mix"
    return True


def _units(tokens: list[str]) -> list[str]:
    """Tokens with each run of spaced dots (". . .") joined to a word, so no sentence is only dots.

    The run joins the word before it, except after a word that already ends a sentence with
    its period ("compounds. . . . The"), or at the start: then it opens the next sentence.
    """
    units: list[str] = []
    i = 0
    while i < len(tokens):
        if _DOTS.fullmatch(tokens[i]):
            j = i
            while j < len(tokens) and _DOTS.fullmatch(tokens[j]):
                j += 1
            run = " ".join(tokens[i:j])
            ended = not units or units[-1].rstrip(_CLOSERS).endswith(".") and not units[-1].endswith("..")
            if j < len(tokens) and ended and (not units or tokens[j][:1].isupper()):
                units.append(f"{run} {tokens[j]}")
                i = j + 1
            elif units:
                units[-1] += " " + run
                i = j
            else:
                units.append(run)  # nothing but dots
                i = j
            continue
        units.append(tokens[i])
        i += 1
    return units


def _marker(token: str) -> str | None:
    match = _MARKER.fullmatch(token)
    return match.group(1) if match else None


def _reread_later(token: str) -> bool:
    """Whether what a token at the end of the text so far means may depend on more than the next token.

    A run of dots joins a word on either side; a list marker or a bullet stops being one when dots
    join it ("2. ..."), and a bullet's item number is the token after the next. Text cut in
    pieces (text.live) decides nothing on them until more has come.
    """
    return bool(_DOTS.fullmatch(token)) or _marker(token) is not None or token in _BULLETS


def _after(marker: str) -> str:
    return str(int(marker) + 1) if marker.isdigit() else chr(ord(marker) + 1)


def _sentences(tokens: list[str]) -> Iterator[list[str]]:
    tokens = _units(tokens)
    start = 0
    expect = None  # the next list marker, inside an inline list ("1. Mix 2. Bake")
    for i in range(len(tokens) - 1):
        token, following = tokens[i], tokens[i + 1]
        opening = i == start or (i == start + 1 and tokens[start] in _BULLETS)
        marker = _marker(token)
        if opening and marker is not None:
            expect = _after(marker)
            continue  # never a boundary right after the marker itself
        if i == start:
            if token in _BULLETS:
                continue  # "• 10. The second item": the bullet and its marker open the item
            expect = None
        if expect is not None and (_marker(following) == expect or (
                following in _BULLETS and i + 2 < len(tokens) and _marker(tokens[i + 2]) == expect)):
            yield tokens[start : i + 1]  # the next item of the list
            start = i + 1
            continue
        previous = tokens[i - 1] if i > start else None
        if _is_boundary(token, following, previous, i - start):
            yield tokens[start : i + 1]
            start = i + 1
    if start < len(tokens):
        yield tokens[start:]


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, whitespace collapsed; a blank line always ends one.

    A period ends a sentence unless it belongs to a title ("Mr."), a Latin abbreviation
    ("e.g."), a number abbreviation before a number ("No. 5"), a decimal, a list marker,
    or an initialism or initial ("U.S.", "a.m.", "J.") not followed by a word that usually
    opens a sentence. Nothing ends before a lowercase word.
    """
    sentences = []
    for paragraph in _PARAGRAPH.split(text):
        sentences += [" ".join(words) for words in _sentences(paragraph.split())]
    return sentences


def _clauses(sentence: str) -> list[str]:
    clauses, current = [], []
    for token in sentence.split():
        current.append(token)
        if token.rstrip(_CLOSERS).endswith((",", ";", ":", "—", "–")) or token in ("-", "--"):
            clauses.append(" ".join(current))
            current = []
    if current:
        clauses.append(" ".join(current))
    return clauses


def _pack(parts: list[str], max_seconds: float) -> list[str]:
    """Greedily join parts (clauses or words) into pieces no longer than max_seconds."""
    pieces: list[str] = []
    current, length = "", 0.0
    for part in parts:
        seconds = estimate_seconds(part)
        if current and length + seconds > max_seconds:
            pieces.append(current)
            current, length = "", 0.0
        current = f"{current} {part}" if current else part
        length += seconds
    if current:
        pieces.append(current)
    return pieces


def _break_long(sentence: str, max_seconds: float) -> list[str]:
    if estimate_seconds(sentence) <= max_seconds:
        return [sentence]
    pieces = []
    for clause in _pack(_clauses(sentence), max_seconds):
        if estimate_seconds(clause) > max_seconds:
            pieces += _pack(clause.split(), max_seconds)  # no clause boundary left: words
        else:
            pieces.append(clause)
    return pieces


def _chunks(segment: str, min_seconds: float, max_seconds: float) -> list[str]:
    """Chunks of one segment: long sentences broken, short ones merged with a neighbour."""
    return [chunk for chunk, _ in _chunks_after(segment, min_seconds, max_seconds)]


def _chunks_after(segment: str, min_seconds: float, max_seconds: float, skip: int = 0) -> list[tuple[str, int]]:
    """`_chunks` of the segment after its first `skip` words, each with the count of words of its sentence before it.

    The skipped words (pieces of a long sentence that have left already, text.live) still
    decide where that sentence ends and how it breaks, as they do in the whole text.
    """
    chunks: list[tuple[str, int]] = []
    lengths: list[float] = []
    for sentence in split_sentences(segment):
        before = 0
        for piece in _break_long(sentence, max_seconds):
            words = piece.split()
            if skip >= len(words):
                skip -= len(words)
                before += len(words)
                continue
            if skip:
                piece, before, words, skip = " ".join(words[skip:]), before + skip, words[skip:], 0
            seconds = estimate_seconds(piece)
            if chunks and (lengths[-1] < min_seconds or seconds < min_seconds) and lengths[-1] + seconds <= max_seconds:
                chunks[-1] = (chunks[-1][0] + " " + piece, chunks[-1][1])
                lengths[-1] += seconds
            else:
                chunks.append((piece, before))
                lengths.append(seconds)
            before += len(words)
    return chunks


def _ends_segment(line: str) -> bool:
    """A line whose last word ends a sentence whatever follows (not 'Mr.' or 'e.g.')."""
    core = line.rstrip().rstrip(_CLOSERS)
    if not core.endswith(_TERMINAL):
        return False
    if core.endswith(".") and not core.endswith(".."):
        word = core.rsplit(None, 1)[-1][:-1].lstrip(_OPENERS)
        if (word in TITLES and word not in AFTER_NAME) or word.lower() in _NEVER_FINAL:
            return False
        if len(word) == 1 and word.isupper():
            return False  # an initial: "J."
    return True
