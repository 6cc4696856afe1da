"""Text that arrives in pieces: the chunks `split` would make, each as soon as it is known.

The one incremental splitter: `soprano synth` and `soprano split` feed it lines
(`incremental_split`), Wyoming and the WebSocket feed it a language model's deltas (through
`pipeline.LiveSentences`). A chunk leaves once the next one has begun: `split` is greedy from the
left (a chunk closes when the following sentence does not join it, and a longer following
sentence would not join it either), so the chunks `split` makes of what has arrived, all but the
last, are the chunks it makes of the whole text. A token still growing (no whitespace after it
yet) is held back, since "Dr." ends a sentence or not by the word after it and "3." may yet be
"3.5". At each line break the line rules apply: a blank line, or a line whose last word ends a
sentence, ends a segment (chunks never span two); any other line joins the next (wrapped prose).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from soprano_cli.text.duration import estimate_seconds
from soprano_cli.text.split import _chunks_after, _clauses, _ends_segment, _reread_later, split_sentences

RECHECK_SECONDS = 1.0  # a chunk may wait this much more text to be noticed complete
CHEAP_CHARS = 512  # pending text this long is split again at every chance; longer, once it grew by an eighth
_ENDS_PIECE = re.compile(r"[.!?…‽][\"')\]}”’»]*$")  # sentence-final punctuation at a word's end

# Line boundaries as str.splitlines sees them (what `split` and the HTTP API split on).
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


class LiveSplitter:
    """Feed text with `feed`, end it with `finish`; both return the chunks now complete, in order.

    `max_chars` bounds the text held back (a sender's text that never ends a sentence): past it,
    the whole words that fit are split as a segment of their own and leave, and a single word
    longer than that is cut. None (the default) keeps `split`'s chunks exactly, with one known
    exception: an inline numbered list whose items open with a bullet ("1. a • 2. b"), inside a
    sentence broken at max_seconds, may be cut differently where the text arrived in pieces.
    """

    def __init__(self, min_seconds: float = 2.0, max_seconds: float = 30.0, max_chars: int | None = None):
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self.max_chars = max_chars
        # Whole tokens of the current segment not yet in a chunk that left, after the `_context` first
        # ones: those of the unfinished sentence that have left (a piece of a long one), which still
        # decide where it ends ("6 P.M. Mr." ends after "P.M." only past the sentence's third word).
        self._tokens: list[str] = []
        self._context = 0
        self._chars = 0  # len(" ".join(self._tokens)) + 1
        self._tail = ""  # text after the last whitespace or line break: a token that may still grow
        self._line_started = False  # the current line has a token (a line without one is blank)
        self._unchecked = 0.0  # seconds of words added since the pending text was last split
        self._checked_chars = 0  # self._chars when the pending text was last split

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
        return out + self._bound()

    def finish(self) -> list[str]:
        """The rest, as the end of the text (or of a turn: more may be fed after, as a new text)."""
        tail, self._tail = self._tail, ""
        self._add(tail.split())
        self._line_started = False
        return self._flush(final=True)

    def _add(self, words: list[str]) -> None:
        self._tokens += words
        self._chars += sum(len(word) + 1 for word in words)

    def line(self, text: str) -> list[str]:
        """One whole line (no line break in it): a segment is split once, when it ends, as `split` splits it."""
        return self._line(text, ended=True, eager=False)

    def _line(self, text: str, *, ended: bool, eager: bool = True) -> list[str]:
        words = text.split()
        if not ended and words and not text[-1].isspace():
            self._tail = words.pop()  # still growing
        before = self._tokens[-1] if self._tokens else ""
        self._add(words)
        self._line_started = self._line_started or bool(words)
        if ended:
            started, self._line_started = self._line_started, False
            if not started or _ends_segment(self._tokens[-1] if self._tokens else ""):
                return self._flush(final=True)  # a blank line, or a line that ends a sentence: the segment ends
            # Otherwise wrapped prose goes on: the line's last word is whole, so a sentence may have ended.
        if not words or not eager:
            return []
        # Splitting again costs the whole pending text: do it when a sentence may have ended (a word
        # ending in . ! ? got the word after it, which decides) or once RECHECK_SECONDS of new words
        # have come (the next chunk may now be too long to join), not per word.
        self._unchecked += sum(estimate_seconds(word) for word in words)
        ended_piece = any(_ENDS_PIECE.search(word) for word in [before, *words])
        if self._unchecked < RECHECK_SECONDS and not ended_piece:
            return []
        return self._flush(final=False) if self._worth_splitting() else []

    def _worth_splitting(self) -> bool:
        """Whether to split the pending text again now: short text always, long text once it grew by an eighth.

        Pending text grows long only when nothing closes a chunk (words estimated at no time at
        all): splitting it all again at each word would cost time quadratic in its length.
        """
        return self._chars <= CHEAP_CHARS or self._chars - self._checked_chars >= self._chars // 8

    def _flush(self, *, final: bool) -> list[str]:
        self._unchecked = 0.0
        known = len(self._tokens)
        while not final and known > self._context and _reread_later(self._tokens[known - 1]):
            known -= 1  # held back as a growing word is
        chunks = _chunks_after(" ".join(self._tokens[:known]), self.min_seconds, self.max_seconds, self._context)
        if final:
            self._tokens, self._context, self._chars = [], 0, 0
        elif chunks:
            held = [chunks.pop()]
            sentence = known - len(held[0][0].split()) - held[0][1]  # where the last chunk's sentence begins
            if chunks and self._may_join(chunks[-1][0], held[0][0]) and \
                    len(split_sentences(" ".join(self._tokens[sentence:known]))) == 1:
                # The last chunk is the unfinished sentence (or its last piece): growing past max_seconds
                # it may break into a first piece short enough to join the chunk before, which waits too.
                held.insert(0, chunks.pop())
            before = held[0][1]
            start = known - sum(len(chunk.split()) for chunk, _ in held) - before  # where held text's sentence begins
            del self._tokens[:start]
            self._context = before
            self._chars = sum(len(token) + 1 for token in self._tokens)
        self._checked_chars = self._chars
        return [chunk for chunk, _ in chunks]

    def _may_join(self, chunk: str, last: str) -> bool:
        """Whether `chunk` could yet join the first piece of `last`, were `last` broken (that piece holds its first clause)."""
        seconds, least = estimate_seconds(chunk), estimate_seconds(_clauses(last)[0])
        return seconds + least <= self.max_seconds and min(seconds, least) < self.min_seconds

    def _bound(self) -> list[str]:
        """Past max_chars held back: the whole words that fit leave as a segment of their own."""
        if self.max_chars is None:
            return []
        out: list[str] = []
        while len(self._tail) > self.max_chars:  # one word longer than the bound: cut it
            self._add([self._tail[:self.max_chars]])
            self._tail = self._tail[self.max_chars:]
        while self._chars - 1 + len(self._tail) > self.max_chars and len(self._tokens) > self._context:
            count, size = 0, -1
            while count < len(self._tokens) and size + len(self._tokens[count]) + 1 <= self.max_chars:
                size += len(self._tokens[count]) + 1
                count += 1
            count = max(count, self._context + 1)
            rest, self._tokens = self._tokens[count:], self._tokens[:count]
            out += self._flush(final=True)
            self._add(rest)
        return out


def incremental_split(lines: Iterable[str], min_seconds: float = 2.0, max_seconds: float = 30.0) -> Iterator[str]:
    """Chunks of a stream of lines, yielded as soon as each is known complete.

    Lines are grouped into segments: a blank line ends a paragraph and so a segment; a
    line ending in sentence-final punctuation (. ! ? … then optional closing quotes or
    brackets; not a title such as "Mr." or "e.g.", nor an initial) ends the segment at that
    line; any other line is joined with the next (hard-wrapped prose); the end of input ends
    the last one. Each segment is then cut into chunks as `split` describes, and chunks
    never span two segments; a chunk leaves as soon as the next one has begun.
    """
    splitter = LiveSplitter(min_seconds, max_seconds)
    for line in lines:
        for part in line.splitlines() or [""]:
            yield from splitter.line(part)
    yield from splitter.finish()


def split(text: str, min_seconds: float = 2.0, max_seconds: float = 30.0) -> list[str]:
    """Speakable chunks of about min_seconds..max_seconds (estimate_seconds), in order, losing no word.

    Sentences come from split_sentences; one longer than max_seconds is broken at clause
    boundaries (after , ; : or a dash) and, failing that, between words; a piece shorter than
    min_seconds joins its neighbour when the two fit in max_seconds. Equal by construction to
    `list(incremental_split(text.splitlines(), ...))`, whose docstring gives the line rules.
    """
    return list(incremental_split(text.splitlines(), min_seconds, max_seconds))
