"""Text that arrives in pieces (an LLM's deltas): the chunks `split` would make, each as soon as it is known.

`incremental_split` needs whole lines; a streaming LLM sends a paragraph a few characters at a
time, so waiting for its newline would hold every sentence back until the answer ends. Here a
chunk leaves once the next one has begun: `split` is greedy from the left (a chunk closes when
the following sentence does not join it, and a longer following sentence would not join it
either), so the chunks `split` makes of what has arrived, all but the last, are the chunks it
makes of the whole text. A token still growing (no whitespace after it yet) is held back, and the
line rules of `incremental_split` (a blank line, or a line ending a sentence, ends a segment)
apply at each line break.
"""

from __future__ import annotations

import re

from soprano_cli.text.duration import estimate_seconds
from soprano_cli.text.split import _chunks, _ends_segment

RECHECK_SECONDS = 1.0  # a chunk may wait this much more text to be noticed complete
_ENDS_PIECE = re.compile(r"[.!?…‽][\"')\]}”’»]*$")  # sentence-final punctuation at a word's end

# Line boundaries as str.splitlines sees them (what `split` and the HTTP API split on).
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


class LiveSplitter:
    """Feed text deltas with `feed`, end with `finish`; both return the chunks now complete, in order."""

    def __init__(self, min_seconds: float = 2.0, max_seconds: float = 30.0):
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self._tokens: list[str] = []  # whole tokens of the current segment, not yet in a chunk that left
        self._tail = ""  # text after the last whitespace or line break: a token that may still grow
        self._line_started = False  # the current line has a token (a line without one is blank)
        self._unchecked = 0.0  # seconds of words added since the pending text was last split

    def feed(self, delta: str) -> list[str]:
        lines = (self._tail + delta).splitlines(keepends=True)
        self._tail = ""
        partial = lines.pop() if lines and lines[-1][-1] not in _LINE_BREAKS else None
        if partial is None and lines and lines[-1].endswith("\r"):
            # "\r" then "\n" in the next delta is one line break, not two (two would be a blank line).
            self._tail = lines.pop()
        out: list[str] = []
        for line in lines:
            out += self._line(line.rstrip(_LINE_BREAKS), ended=True)
        if partial is not None:
            out += self._line(partial, ended=False)
        return out

    def finish(self) -> list[str]:
        """The rest, as the end of the text: everything left is complete."""
        tail, self._tail = self._tail, ""
        self._tokens += tail.split()
        return self._flush(final=True)

    def _line(self, text: str, *, ended: bool) -> list[str]:
        words = text.split()
        if not ended and words and not text[-1].isspace():
            self._tail = words.pop()  # still growing
        self._tokens += words
        self._line_started = self._line_started or bool(words)
        if not ended:
            # Splitting again costs the whole pending text: do it when a sentence may have ended or
            # once RECHECK_SECONDS of new words have come (a long sentence breaks), not per word.
            self._unchecked += sum(estimate_seconds(word) for word in words)
            if self._unchecked < RECHECK_SECONDS and not any(_ENDS_PIECE.search(word) for word in words):
                return []
            return self._flush(final=False)
        started, self._line_started = self._line_started, False
        if not started or _ends_segment(self._tokens[-1] if self._tokens else ""):
            return self._flush(final=True)  # a blank line, or a line that ends a sentence: the segment ends
        return self._flush(final=False)

    def _flush(self, *, final: bool) -> list[str]:
        self._unchecked = 0.0
        if not self._tokens:
            return []
        chunks = _chunks(" ".join(self._tokens), self.min_seconds, self.max_seconds)
        done = chunks if final else chunks[:-1]
        used = sum(len(chunk.split()) for chunk in done)
        del self._tokens[:used]
        return done
