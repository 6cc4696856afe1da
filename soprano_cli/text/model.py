"""`model_text`: the last cleanup before the model, down to the characters it was trained on."""

from __future__ import annotations

import re
import unicodedata

# After lowercasing and transliteration, only these reach the model (the reference's contract).
ALLOWED_MODEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789 !$%&'*,-.?")

# Letters NFKD does not split into a base and a mark.
_TRANSLITERATE = str.maketrans({
    "ß": "ss", "æ": "ae", "ø": "o", "ł": "l", "đ": "d", "þ": "th", "ð": "d", "œ": "oe",
    "ı": "i", "ŋ": "ng", "ħ": "h", "ŧ": "t", "ĸ": "k", "ſ": "s", "ƒ": "f", "ə": "e",
    ":": ".", ";": ",", "’": "'", "‘": "'", "–": "-", "—": "-", "…": "...",
})
_DISALLOWED = re.compile(r"[^a-z0-9 !$%&'*,\-.?]+")
_SPACE_BEFORE = re.compile(r" +(?=[,.!?])")
_SPACES = re.compile(r" {2,}")


def model_text(text: str) -> str:
    """Lowercase ASCII in ALLOWED_MODEL_CHARS: ':' -> '.', ';' -> ',', the rest deleted; no number expansion."""
    text = text.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE)).lower()
        text = text.translate(_TRANSLITERATE)
    else:
        text = text.replace(":", ".").replace(";", ",")
    text = re.sub(r"\s", " ", text)
    text = _DISALLOWED.sub(lambda m: " " if " " in m.group(0) else "", text)
    text = _SPACE_BEFORE.sub("", _SPACES.sub(" ", text))
    return text.strip()
