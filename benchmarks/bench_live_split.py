"""Worst-case cost of splitting text that arrives in pieces: 4 KiB that never ends a sentence, one character a delta.

Each case is text of 4096 characters in which no chunk can close, so everything stays pending
and every delta may re-split it. Prints the total seconds to feed it (best of --repeat) for the
live splitter as Wyoming uses it (`split`'s chunks) and as the WebSocket uses it (sentences,
with and without normalization).

    python benchmarks/bench_live_split.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

SIZE = 4096
CASES = {
    "words": "word ",  # no punctuation at all
    "titles": "Mr. ",  # every word ends in a period that never ends a sentence
    "initials": "x. ",  # a period after one letter: a boundary only before a sentence starter
    "no-letters": "(( ",  # estimated at zero seconds: never long enough to break
    "interrobangs": "‽ ",  # sentences of zero seconds: each merges with the next
    "one-token": "w",  # one word that keeps growing
}


def _text(unit: str) -> str:
    return (unit * (SIZE // len(unit) + 1))[:SIZE]


def _splitters() -> dict:
    """name -> a factory of objects with push(delta) -> list and flush() -> list, configured as the servers do."""
    from soprano_cli.text.pipeline import LiveSentences

    return {
        "ws sentences, raw": lambda: LiveSentences(normalize=False, max_chars=SIZE),
        "ws sentences, normalized": lambda: LiveSentences(normalize=True, max_chars=SIZE),
        "wyoming chunks": lambda: LiveSentences(normalize=True, min_seconds=2.0, max_chars=SIZE),
    }


def _feed(make, text: str) -> float:
    splitter = make()
    start = time.perf_counter()
    for ch in text:
        splitter.push(ch)
    splitter.flush()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    makers = _splitters()
    names = sorted(makers)
    print(f"{'case':<14}" + "".join(f"{name:>28}" for name in names) + "   (seconds for 4 KiB, one character a delta)")
    for case, unit in CASES.items():
        text = _text(unit)
        row = [min(_feed(makers[name], text) for _ in range(args.repeat)) for name in names]
        print(f"{case:<14}" + "".join(f"{seconds:>28.3f}" for seconds in row), flush=True)


if __name__ == "__main__":
    main()
