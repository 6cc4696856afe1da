"""A user lexicon: words and patterns the rules cannot know, with how to say them.

File format (UTF-8 text, one entry a line; `#` starts a comment line; blank lines are skipped):

    Nguyen<TAB>win
    kubectl<TAB>cube control
    /\\bv(\\d+)\\b/<TAB>version \\1

A word matches as a whole word, case-sensitively. `/regex/` is a Python regular expression
(`\\1` in the spoken form refers to its groups; `(?i)` at its start ignores case). Entries
apply in file order, words first, before the rules of `normalize` see the text, so a spoken
form may use digits and symbols ("3 D"). A pattern runs as written: one that backtracks
("(a+)+b") is as slow here as anywhere, so requests may send words only. Say it in plain words that no entry matches again,
or `normalize | normalize` could change the text a second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from soprano_cli.errors import InvalidParameterError

# Bounds that keep a lexicon cheap to apply on every line.
MAX_ENTRIES = 10_000
MAX_LENGTH = 200


@dataclass(frozen=True)
class Lexicon:
    """Whole words -> spoken forms, then (pattern, spoken) pairs; empty by default."""

    words: dict[str, str] = field(default_factory=dict)
    patterns: tuple[tuple[re.Pattern, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.words or self.patterns)

    def apply(self, text: str) -> str:
        """`text` with every entry replaced by its spoken form."""
        if self.words:
            text = _word_pattern(tuple(self.words)).sub(lambda m: self.words[m.group(0)], text)
        for pattern, spoken in self.patterns:
            text = pattern.sub(spoken, text)
        return text

    def merged(self, other: "Lexicon") -> "Lexicon":
        """This lexicon with `other`'s entries added (and winning where both have a word)."""
        return Lexicon({**self.words, **other.words}, self.patterns + other.patterns)


def _word_pattern(words: tuple[str, ...]) -> re.Pattern:
    return _compile_words(tuple(sorted(words, key=len, reverse=True)))


_CACHE: dict[tuple[str, ...], re.Pattern] = {}


def _compile_words(words: tuple[str, ...]) -> re.Pattern:
    pattern = _CACHE.get(words)
    if pattern is None:
        if len(_CACHE) > 64:
            _CACHE.clear()
        pattern = _CACHE[words] = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)")
    return pattern


def from_words(entries: dict[str, str], *, param: str = "lexicon") -> Lexicon:
    """Plain word entries (a request's), checked: no regular expressions from the network."""
    if len(entries) > MAX_ENTRIES:
        raise InvalidParameterError(f"the lexicon has {len(entries)} entries; the limit is {MAX_ENTRIES}", param=param)
    for word, spoken in entries.items():
        _check_entry(word, spoken, f"lexicon entry {word!r}"[:80], param)
    return Lexicon(dict(entries))


def parse(text: str, *, source: str = "lexicon") -> Lexicon:
    """A lexicon from its file format (see the module docstring)."""
    words: dict[str, str] = {}
    patterns: list[tuple[re.Pattern, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        written, tab, spoken = line.partition("\t")
        where = f"{source}, line {number}"
        if not tab:
            raise InvalidParameterError(f"{where}: expected 'written<TAB>spoken'", param="lexicon")
        written, spoken = written.strip(), spoken.strip()
        _check_entry(written, spoken, where, "lexicon")
        if len(written) > 2 and written.startswith("/") and written.endswith("/"):
            try:
                patterns.append((re.compile(written[1:-1]), spoken))
            except re.error as error:
                raise InvalidParameterError(f"{where}: bad regular expression: {error}", param="lexicon") from None
        else:
            words[written] = spoken
        if len(words) + len(patterns) > MAX_ENTRIES:
            raise InvalidParameterError(f"{source}: more than {MAX_ENTRIES} entries", param="lexicon")
    return Lexicon(words, tuple(patterns))


def load(path: str | Path) -> Lexicon:
    """A lexicon file (`--lexicon`, SOPRANO_LEXICON)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidParameterError(f"cannot read the lexicon {path}: {error}", param="lexicon") from None
    return parse(text, source=str(path))


def _check_entry(written: str, spoken: str, where: str, param: str) -> None:
    if not isinstance(written, str) or not isinstance(spoken, str) or not written.strip():
        raise InvalidParameterError(f"{where}: an entry needs a written form and a spoken form", param=param)
    if len(written) > MAX_LENGTH or len(spoken) > MAX_LENGTH:
        raise InvalidParameterError(f"{where}: an entry is longer than {MAX_LENGTH} characters", param=param)
