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
    """Sentences of text that arrives in pieces (a language model's deltas), each as soon as it is complete.

    The pieces are cut into lines (`DeltaLines`) and read as `sentences_from_lines` reads
    lines, so a sentence is normalized and split as `soprano synth` on stdin would. A sentence
    is spoken once the word after it begins (or a newline or `flush()` comes), never merged with
    the next one, which would make it wait.
    """

    def __init__(self, *, normalize: bool = True, options=None, max_chars: int = 4096):
        from soprano_cli.text.split import DeltaLines, IncrementalSplitter

        self._normalize = normalize
        self._options = options
        self._lines = DeltaLines(max_chars=max_chars)
        self._splitter = IncrementalSplitter(min_seconds=0.0)

    def push(self, delta: str) -> list[str]:
        """The sentences `delta` completed."""
        return self._sentences(self._lines.push(delta))

    def flush(self) -> list[str]:
        """The end of the text so far (an answer's end): the sentences left."""
        return self._sentences(self._lines.flush())

    def _sentences(self, lines: list[str]) -> list[str]:
        chunks: list[str] = []
        for line in _prepared(lines, self._normalize, self._options):
            chunks += self._splitter.push(line)
        return [chunk for chunk in chunks if speakable(chunk)]
