"""`normalize`: written English to the words a careful reader would say, keeping case and punctuation.

The pipeline runs in a fixed order, each step a pure str -> str function:
Unicode cleanup, web addresses, abbreviations, everything with digits (numeric.py),
Roman numerals, acronyms, symbols, then punctuation and whitespace. Every step leaves text
that no step matches again (no digits survive, expansions contain no abbreviations); for
the odd text where tidying creates a new match, `normalize` repeats the pass to a fixed point.
"""

from __future__ import annotations

import re
import unicodedata

from soprano_cli.text.markdown import from_markdown
from soprano_cli.text.numeric import expand_numbers
from soprano_cli.text.options import DEFAULT, TextOptions
from soprano_cli.text.words import expand_abbreviations, expand_acronyms, expand_addresses, expand_roman

# --- Unicode --------------------------------------------------------------------------------

_VULGAR = re.compile(r"(\d?)([¼½¾⅐⅑⅒⅓⅔⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞])")
_SUPERSCRIPT = str.maketrans({"²": "^2", "³": "^3"})
# Characters NFKC leaves alone that a reader still sees as plain punctuation.
_PUNCTUATION = str.maketrans({
    "“": '"', "”": '"', "„": '"', "‟": '"', "«": '"', "»": '"', "〝": '"', "〞": '"',
    "‹": '"', "›": '"', "‚": "'", "‛": "'", "′": "'", "″": '"', "‐": "-", "‑": "-",
    "‒": "–", "―": "—", "⸺": "—", "⸻": "—", "·": ",", "•": ",", "‣": ",", "⁄": "/",
    "\u00a0": " ", "\u2028": " ", "\u2029": " ", "\t": " ", "\r": " ", "\n": " ",
    "→": " to ", "←": " from ", "…": "...",
    # The other ASCII control characters (NUL, BEL, ESC, DEL, ...) are spaces too, as
    # _fold_unicode makes them on lines that are not all ASCII.
    **{chr(code): " " for code in [*range(0x20), 0x7F] if chr(code) not in "\t\r\n"},
})


def _fold_unicode(text: str) -> str:
    """NFKC, Unicode digits to ASCII, no stray combining marks or control characters."""
    if "²" in text or "³" in text:
        text = text.translate(_SUPERSCRIPT)
    if _VULGAR.search(text):
        text = _VULGAR.sub(lambda m: (m.group(1) + " " if m.group(1) else "")
                           + unicodedata.normalize("NFKC", m.group(2)).replace("⁄", "/"), text)
    text = unicodedata.normalize("NFKC", text)
    out = []
    after_letter = False  # a combining mark only stays on a letter
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Mn", "Me", "Mc"):
            if after_letter:
                out.append(ch)
            continue
        if category == "Nd":
            ch = str(unicodedata.decimal(ch))
        elif category == "Cc":
            ch = " "
        elif category == "Cf":
            continue
        after_letter = category.startswith("L")
        out.append(ch)
    return "".join(out)


def _quote(text: str) -> str:
    """Curly quotes to straight ones: apostrophes stay apostrophes, quotation marks become '\"'."""
    text = re.sub(r"(?<=\w)[’‘](?=\w)|[’‘](?=\d0s\b)", "'", text)
    opened = "‘" in text
    text = text.replace("‘", '"')
    return text.replace("’", '"' if opened else "'")


def _dashes(text: str) -> str:
    text = re.sub(r"(?<=\d)\s?–\s?(?=\d)", "-", text)  # 1990–1995 is a range
    # The same as \s*[–—]+\s*, but a match starts only where a run of spaces does: from every
    # space of a long run, that pattern scanned to the run's end (quadratic).
    return _DASH.sub(", ", text)


_DASH = re.compile(r"(?<!\s)\s*[–—]+\s*|[–—]+\s*")


# --- symbols and punctuation ------------------------------------------------------------------

_SYMBOLS = {
    "&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "%": " percent ", "°": " degrees ",
    "§": " section ", "©": " copyright ", "®": "", "™": "", "~": " ", "|": ", ", "_": " ",
    "\\": " ", "×": " times ", "÷": " divided by ", "≤": " less than or equal to ",
    "≥": " greater than or equal to ", "≠": " not equal to ", "≈": " about ", "±": " plus or minus ",
    "−": " minus ", "^": " ", "<": " ", ">": " ", "{": "(", "}": ")", "[": "(", "]": ")",
}
_SYMBOL = re.compile("|".join(re.escape(s) for s in _SYMBOLS))
_HASHTAG = re.compile(r"(?<!\w)#(?=\w)(?!\w*#)")  # "#tag#" is a word between two signs
_SLASH = re.compile(r"\b([A-Za-z]+) ?/ ?(?=([A-Za-z]+)\b)")
_TAG = re.compile(r"</?([A-Za-z][\w-]{0,40})\s?/?>")
# Word pairs whose slash means "or"; elsewhere it is said "slash" ("actor/director").
_SLASH_OR = {("his", "her"), ("he", "she"), ("him", "her"), ("her", "his"), ("she", "he"), ("yes", "no")}


def _slash(m: re.Match) -> str:
    before, after = m.group(1), m.group(2)
    if len(before) == 1 and len(after) == 1 or after == "or":
        return before + " "  # "I/O" is two letters, "and/or" is "and or"
    if (before.lower(), after.lower()) in _SLASH_OR:
        return before + " or "
    return before + " slash "


_EMOTICON = re.compile(r"(?<!\S)[:;]-?[()DPp](?![\w()])")  # ":)", ";-)", ":D": a face, not said


def expand_symbols(text: str) -> str:
    """Symbols left after the specific rules: '&' -> 'and', '#tag' -> 'hashtag tag'."""
    if ":" in text or ";" in text:
        text = _EMOTICON.sub(" ", text)
    if "#" in text:
        # "#tag" opens a hashtag; a "#" inside or after a word is just the sign.
        text = _HASHTAG.sub("hashtag ", text).replace("#", " hash ")
    if "$" in text:
        text = text.replace("$", " dollar ")  # no amount follows, or the money rules took it
    if "<" in text:
        text = _TAG.sub(r" \1 ", text)  # "<noise/>", "</singing>": the tag's name, no slash
    if "/" in text:
        # "and/or" -> "and or", "I/O" -> "I O" (letters), "his/her" -> "his or her",
        # "upgrade/update" -> "upgrade slash update".
        text = _SLASH.sub(_slash, text)
    return _SYMBOL.sub(lambda m: _SYMBOLS[m.group(0)], text)


_CLEANUP = [
    (re.compile(r"\s+"), " "),
    (re.compile(r" (?=[,.!?;:)])"), ""),  # no space before punctuation
    (re.compile(r"(?<=\() "), ""),
    (re.compile(r"\(\s*\)"), ""),
    (re.compile(r"([!?])[!?.]*"), r"\1"),  # "?!!" -> "?"
    (re.compile(r"\.{4,}"), "..."),
    (re.compile(r"(?<!\.)\.\.(?!\.)"), "."),
    (re.compile(r"([,;:])[,;: ]*(?=[,;:])"), ""),  # ",," and ", ;" -> the last one
    (re.compile(r"[,;:]+ ?(?=[.!?])"), ""),  # ",." -> "."
    (re.compile(r"^[\s,;:.!?]+(?!\.\.)"), ""),  # nothing opens with a pause
    (re.compile(r"(?<=\w)([,;:])(?=[A-Za-z])"), r"\1 "),
]


def tidy(text: str) -> str:
    """Collapse whitespace and repeated punctuation; repeated until nothing changes."""
    for _ in range(4):
        before = text
        for pattern, replacement in _CLEANUP:
            text = pattern.sub(replacement, text)
        text = text.strip()
        if text == before:
            break
    return text


def _normalize_once(text: str) -> str:
    if not text.isascii():
        text = _fold_unicode(text)
        text = _quote(text).translate(_PUNCTUATION)
        text = _dashes(text)
    else:
        text = text.translate(_PUNCTUATION)
    text = expand_addresses(text)
    text = expand_abbreviations(text)
    text = expand_numbers(text)
    text = expand_roman(text)
    text = expand_acronyms(text)
    text = expand_symbols(text)
    text = tidy(text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text


def normalize(text: str, options: TextOptions | None = None) -> str:
    """Written English to spoken words, for people and the model alike; pure and idempotent.

    One pass settles nearly every text. Tidying can join pieces into something an earlier
    step reads ("5 - .com" becomes "five.com", a domain), so the pass repeats until the
    text stops changing; in practice the second pass only confirms the first.
    `options` adds markdown, a lexicon, and classes left as written (options.py).
    """
    if options is not None and options != DEFAULT:
        return _normalize_with(prepare(text, options), options)
    return _normalize(text)


def prepare(text: str, options: TextOptions) -> str:
    """What the options do before the rules: markdown to plain text, then the user's lexicon."""
    if options.markdown:
        text = from_markdown(text)
    if options.lexicon:
        text = options.lexicon.apply(text)
    return text


_TRAILING = ".,;:!?)]"


def _normalize_with(text: str, options: TextOptions) -> str:
    kept = options.kept()
    if kept is None:
        return _normalize(text)
    # The forms left as written are cut out, and the text between them normalized on its own.
    pieces, start = [], 0
    for match in kept.finditer(text):
        end = match.start() + len(match.group(0).rstrip(_TRAILING))  # "see www.x.io." keeps its period
        if end <= start:
            continue
        pieces += [_between(text[start:match.start()]), text[match.start():end]]
        start = end
    pieces.append(_between(text[start:]))
    said = ""
    for piece in pieces:
        if piece:
            said += piece if not said or piece[0] in _TRAILING else " " + piece
    return said


def _between(text: str) -> str:
    # Punctuation right after a kept form stays ("Call 555-123-4567."); tidying would drop it.
    rest = text.lstrip(_TRAILING)
    said = _normalize(rest)
    lead = text[: len(text) - len(rest)]
    return f"{lead} {said}" if lead and said else lead or said


def _normalize(text: str) -> str:
    said = _normalize_once(text)
    for _ in range(_MAX_PASSES):
        again = _normalize_once(said)
        if again == said:
            break
        said = again
    return said


_MAX_PASSES = 4
