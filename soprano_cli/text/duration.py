"""`estimate_seconds`: how long a piece of text takes to say, without running the model."""

from __future__ import annotations

import re

# Conversational English runs at about 4 syllables (2.7 words) a second.
SYLLABLES_PER_SECOND = 4.0
SENTENCE_PAUSE_S = 0.35  # after . ! ? and ellipses
CLAUSE_PAUSE_S = 0.15  # after , ; : and dashes

_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
_SYMBOL_SYLLABLES = {"$": 2, "%": 2, "&": 1, "@": 1, "+": 1, "=": 2, "#": 2, "€": 2, "£": 1}


def _syllables(token: str) -> float:
    count = 0.0
    for part in re.findall(r"[^\W\d_]+|\d+|[^\w\s]", token):
        if part[0].isdigit():
            # A digit string is said as about 1.5 syllables a digit ("2024": twen-ty twen-ty four).
            count += 1.5 * len(part)
        elif part.isalpha():
            lower = part.lower()
            if part.isupper() and 1 < len(part) <= 5:
                count += len(part)  # an acronym, spelled out
                continue
            groups = len(_VOWEL_GROUPS.findall(lower))
            if lower.endswith("e") and groups > 1 and not lower.endswith(("le", "ee")):
                groups -= 1  # silent final e
            count += max(1, groups)
        else:
            count += _SYMBOL_SYLLABLES.get(part, 0)
    return count


def _pause(token: str) -> float:
    tail = token.rstrip("\"')]}”’»")
    if tail.endswith((".", "!", "?", "…")):
        return SENTENCE_PAUSE_S
    if tail.endswith((",", ";", ":", "—", "–")) or tail in ("-", "--"):
        return CLAUSE_PAUSE_S
    return 0.0


def estimate_seconds(text: str) -> float:
    """Seconds of speech for `text`: syllables / SYLLABLES_PER_SECOND plus pauses at punctuation.

    Syllables are counted as vowel groups per word (minus a silent final e), letters for a
    short all-capitals acronym and 1.5 per digit. The estimate is a sum over whitespace-
    separated tokens, so the estimate of two texts joined by a space is the sum of theirs.
    """
    total = 0.0
    for token in text.split():
        total += _syllables(token) / SYLLABLES_PER_SECOND + _pause(token)
    return total
