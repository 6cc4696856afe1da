"""What `normalize` does beyond its defaults: markdown, a user lexicon, classes left as written."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from soprano_cli.text.lexicon import Lexicon

# Classes that can be left as written, and the forms each one protects from the rules.
# Patterns are bounded (as in words.py and numeric.py), so finding them stays linear.
_URL = r"\b(?:https?://|www\.)[^\s<>\"']{1,2000}"
_EMAIL = r"(?<![\w.+&-])[\w.+&-]{1,64}@[A-Za-z\d-]{1,63}(?:\.[A-Za-z\d-]{1,63}){1,8}\b"
_PHONE = (r"(?<![\w+-])(?:\+\d{1,3}(?:[ .-]\(?\d{1,4}\)?){2,5}|(?:1[-. ])?\(?\d{3}\)?[-. ]{1,2}\d{3}[-.]\d{4}"
          r"|\(\d{3}\)\s?\d{3}[ -]\d{4})(?![\w-])")
CLASSES = {"urls": _URL, "emails": _EMAIL, "phone_numbers": _PHONE}


@dataclass(frozen=True)
class TextOptions:
    """Options of `normalize`; the defaults are plain `normalize`."""

    markdown: bool = False  # markdown and emoji to plain text first (markdown.py)
    lexicon: Lexicon = field(default_factory=Lexicon)  # user words, applied before the rules
    urls: bool = True  # read web addresses aloud; False: leave them as written
    emails: bool = True  # read e-mail addresses aloud; False: leave them as written
    phone_numbers: bool = True  # read phone numbers digit by digit; False: leave them as written

    def kept(self) -> re.Pattern | None:
        """The forms left as written, as one pattern; None when every class is read."""
        off = tuple(name for name in CLASSES if not getattr(self, name))
        return _kept_pattern(off) if off else None


_KEPT: dict[tuple[str, ...], re.Pattern] = {}


def _kept_pattern(names: tuple[str, ...]) -> re.Pattern:
    if names not in _KEPT:
        _KEPT[names] = re.compile("|".join(f"(?:{CLASSES[name]})" for name in names))
    return _KEPT[names]


DEFAULT = TextOptions()
