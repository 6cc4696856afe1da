"""What `normalize` does beyond its defaults: markdown, a user lexicon, classes left as written."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from soprano_cli.text.contacts import EMAIL, PHONE, URL
from soprano_cli.text.lexicon import Lexicon

# Classes that can be left as written: the very patterns the rules read them by (contacts.py).
CLASSES = {"urls": URL, "emails": EMAIL, "phone_numbers": PHONE}


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
