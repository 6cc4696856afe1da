"""Marked-up input -> the sentences the engine speaks and the pauses between them (`Script`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from soprano_cli.text.markup import MAX_PAUSE_SECONDS, MarkupError, Pause, pieces


class Script:
    """Iterates the sentences to speak (as `sentences_from_lines` does), noting the pauses around them.

    Sentences are read lazily, so `synth` on stdin speaks each as soon as it is complete; the pause
    before sentence `i` is known by the time sentence `i` has been yielded, and `after_last` once
    the iteration has ended. The audio layer reads them as it writes each sentence.
    """

    def __init__(self, lines: Iterable[str], **sentence_options):
        self._lines = lines
        self._options = sentence_options  # for sentences_from_lines
        self._pauses: dict[int, float] = {}
        self.count = 0  # sentences yielded so far
        self.after_last = 0.0  # seconds of silence after the last sentence

    def pause_before(self, sentence: int) -> float:
        """Seconds of silence before sentence `sentence` (0-based), as the markup asked."""
        return self._pauses.get(sentence, 0.0)

    def __iter__(self) -> Iterator[str]:
        from soprano_cli.text.pipeline import sentences_from_lines

        source = iter(pieces(self._lines))
        pending = 0.0  # silence asked for before the next sentence
        while True:
            boundary: list[Pause | None] = []  # what ended the segment: a Pause, or None at the input's end

            def segment() -> Iterator[str]:
                for piece in source:
                    if isinstance(piece, Pause):
                        boundary.append(piece)
                        return
                    yield from piece.split("\n")
                boundary.append(None)

            for sentence in sentences_from_lines(segment(), **self._options):
                if pending:
                    self._pauses[self.count] = pending
                    pending = 0.0
                self.count += 1
                yield sentence
            # Only now: the splitter may pull the pause before it yields the segment's last sentence.
            if boundary and boundary[0] is not None:
                pending += boundary[0].seconds
                if pending > MAX_PAUSE_SECONDS:  # so silence stays in proportion to the text that asks for it
                    raise MarkupError(f"more than {MAX_PAUSE_SECONDS:g} seconds of pauses in a row")
                continue
            self.after_last = pending
            return


def script_from_text(text: str, **sentence_options) -> tuple[list[str], Script]:
    """All sentences of `text` and the Script that holds their pauses."""
    script = Script(text.splitlines(), **sentence_options)
    return list(script), script
