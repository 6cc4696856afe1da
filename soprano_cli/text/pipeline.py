"""From input lines to the sentences the engine speaks: the one place synth, serve and the API agree on."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def sentences_from_lines(lines: Iterable[str], *, normalize: bool = True, options=None, lines_are_chunks: bool = False,
                         min_seconds: float = 2.0, max_seconds: float = 30.0) -> Iterator[str]:
    """Normalize each line (as `soprano normalize` does) and split into chunks (as `soprano split`).

    `options` (TextOptions) adds markdown, a lexicon and classes left as written; without
    `normalize`, only its markdown and lexicon apply.
    With `lines_are_chunks`, each non-blank line is one finished chunk, as `soprano split` writes
    them, so `normalize | split | synth --lines` speaks exactly what plain `synth` speaks.
    """
    from soprano_cli.text import incremental_split

    lines = _prepared(lines, normalize, options)
    if lines_are_chunks:
        chunks = (line.strip() for line in lines)
    else:
        chunks = incremental_split(lines, min_seconds=min_seconds, max_seconds=max_seconds)
    yield from (chunk for chunk in chunks if speakable(chunk))


def _prepared(lines: Iterable[str], normalize: bool, options) -> Iterator[str]:
    """Each line as the model will read it: normalized, or only its markdown and lexicon applied."""
    if normalize:
        from soprano_cli.text import normalize as normalize_text

        return (normalize_text(line, options) for line in lines)
    if options is not None:
        from soprano_cli.text.normalize import prepare

        return (prepare(line, options) for line in lines)
    return iter(lines)


def speakable(chunk: str) -> bool:
    """Whether the model gets a letter or digit to say: emoji-only or control-only text spoke an empty prompt."""
    from soprano_cli.text import model_text

    return any(ch.isalnum() for ch in model_text(chunk))


def sentences_from_text(text: str, **options) -> list[str]:
    """`sentences_from_lines` over a whole string."""
    return list(sentences_from_lines(text.splitlines(), **options))


class LiveSentences:
    """Chunks to speak of text that arrives in pieces (a language model's deltas), each as soon as it is complete.

    The pieces go through the one incremental splitter (`text.live.LiveSplitter`), before
    normalization (a number's length is guessed from its digits), and each chunk it lets go is
    then read as `sentences_from_lines` reads a line: normalized and split again with the same
    bounds. With `min_seconds` 0 (the WebSocket) a chunk is a sentence (or a piece of one longer
    than `max_seconds`), spoken once the word after it is whole, or at a line that ends a
    sentence, or at `flush()`; with 2 (Wyoming) short sentences join a neighbour, as `split`
    joins them, and a chunk leaves once the next one has begun and cannot join it.
    """

    def __init__(self, *, normalize: bool = True, options=None, min_seconds: float = 0.0, max_seconds: float = 30.0,
                 max_chars: int | None = 4096):
        from soprano_cli.text.live import LiveSplitter

        self._options = dict(normalize=normalize, options=options, min_seconds=min_seconds, max_seconds=max_seconds)
        self._splitter = LiveSplitter(min_seconds, max_seconds, max_chars=max_chars)

    def push(self, delta: str) -> list[str]:
        """The chunks `delta` completed."""
        return self._sentences(self._splitter.feed(delta))

    def flush(self) -> list[str]:
        """The end of the text so far (an answer's end): the chunks left."""
        return self._sentences(self._splitter.finish())

    def _sentences(self, chunks: list[str]) -> list[str]:
        return [sentence for chunk in chunks for sentence in sentences_from_lines([chunk], **self._options)]
