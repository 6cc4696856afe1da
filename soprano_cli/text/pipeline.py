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
    from soprano_cli.text import normalize as normalize_text

    if normalize:
        lines = (normalize_text(line, options) for line in lines)
    elif options is not None:
        from soprano_cli.text.normalize import prepare

        lines = (prepare(line, options) for line in lines)
    if lines_are_chunks:
        chunks = (line.strip() for line in lines)
    else:
        chunks = incremental_split(lines, min_seconds=min_seconds, max_seconds=max_seconds)
    yield from (chunk for chunk in chunks if speakable(chunk))


def speakable(chunk: str) -> bool:
    """Whether the model gets a letter or digit to say: emoji-only or control-only text spoke an empty prompt."""
    from soprano_cli.text import model_text

    return any(ch.isalnum() for ch in model_text(chunk))


def sentences_from_text(text: str, **options) -> list[str]:
    """`sentences_from_lines` over a whole string."""
    return list(sentences_from_lines(text.splitlines(), **options))
