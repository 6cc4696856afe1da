"""Markdown and emoji from LLMs and the web, turned into plain text a reader would say; one line at a time.

What is kept: the words of headings, emphasis, links (their text, not the address), images
(their alt text), code spans (the code, without backticks), list items, block quotes and
table cells (joined by commas). What is dropped: the markup itself, rules (---), table
separator rows, code fences (the fence lines; the code between them is read as text, since a
line-by-line reader cannot know it is inside a block), footnote marks and emoji. Emoji are
dropped rather than named: "Great job! 🎉" read as "party popper" is never what the writer meant.

Every pattern is bounded by the character that closes it ([^*]+ up to the next '*'), so a line
is scanned in linear time however its markers are nested or left open.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s{0,3}(?:`{3,}|~{3,})")
_RULE = re.compile(r"^\s{0,3}(?:(?:-\s*){3,}|(?:\*\s*){3,}|(?:_\s*){3,})$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_HEADING_TAIL = re.compile(r"\s+#+\s*$")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+(?:\[[ xX]\]\s+)?")
_IMAGE = re.compile(r"!\[([^\[\]\n]*)\]\([^()\s]*(?:\s\"[^\"]*\")?\)")
_LINK = re.compile(r"\[([^\[\]\n]+)\](?:\([^()\s]*(?:\s\"[^\"]*\")?\)|\[[^\[\]]*\])")
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^<>\s]+)>")
_FOOTNOTE = re.compile(r"\[\^[^\]\s]{1,20}\]")
_CODE = re.compile(r"`+([^`]+)`+")
_STRONG = re.compile(r"(\*\*|__)(?=\S)([^*_]+?)(?<=\S)\1")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])|(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~([^~]+)~~")
_HTML_BREAK = re.compile(r"<br\s?/?>", re.IGNORECASE)
# Pictographs, dingbats, flags and their joiners and modifiers: what keyboards call emoji.
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE0F\u200D\U000E0020-\U000E007F]+"
)


def from_markdown(line: str) -> str:
    """One line of markdown as plain text: '## **Step 1**: see [the docs](https://x.io) 🎉' -> 'Step 1: see the docs.'"""
    if _FENCE.match(line) or _RULE.match(line) or _TABLE_SEPARATOR.match(line):
        return ""
    heading = _HEADING.match(line)
    if heading:
        line = _HEADING_TAIL.sub("", line[heading.end():])
    line = _QUOTE.sub("", line)
    line = _BULLET.sub("", line)
    if "|" in line:
        # A table row: its cells, separated as a reader would pause between them.
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        line = ", ".join(cell for cell in cells if cell)
    if "[" in line:
        line = _IMAGE.sub(r"\1", line)
        line = _FOOTNOTE.sub("", line)
        line = _LINK.sub(r"\1", line)
    if "<" in line:
        line = _AUTOLINK.sub(r"\1", line)
        line = _HTML_BREAK.sub(" ", line)
    if "`" in line:
        line = _CODE.sub(r"\1", line)
    if "*" in line or "_" in line:
        line = _STRONG.sub(r"\2", line)
        line = _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), line)
    if "~" in line:
        line = _STRIKE.sub(r"\1", line)
    if not line.isascii():
        line = _EMOJI.sub("", line)
    line = line.strip()
    if heading and line and line[-1].isalnum():
        line += "."  # a heading is said as a sentence of its own
    return line
