"""LiveSplitter: text in arbitrary pieces gives `split`'s chunks, each as soon as it is known."""

from __future__ import annotations

import random

import pytest

from soprano_cli.text import split
from soprano_cli.text.live import LiveSplitter

TEXTS = [
    "A line without an end\ncontinues here. Another sentence.\nMr.\nSmith arrived.\n\nNext paragraph!\nLast line",
    "Sure! The kitchen lights are off now. I also set the thermostat to twenty degrees, as you asked. Anything else?",
    "Dr. Smith said: “It’s 5 p.m.” Then… nothing!\n\nNew paragraph here\nwrapped line. End",
    "1. The first item 2. The second item. He left the bank at 6 P.M. Mr. Smith then went home.\r\n"
    "I met Dr. Who. He was nice.\r\n\r\nOk.",
    " ".join(f"Sentence number {i} has a few words in it." for i in range(40)),
    "word " * 200,  # no sentence end: broken between words past max_seconds
]


def pieces(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 60))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


@pytest.mark.parametrize("text", TEXTS, ids=[text[:24] for text in TEXTS])
def test_any_pieces_give_splits_chunks(text):
    rng = random.Random(text)
    for _ in range(30):
        splitter = LiveSplitter()
        chunks = [chunk for piece in pieces(text, rng) for chunk in splitter.feed(piece)]
        assert chunks + splitter.finish() == split(text)
    one_by_one = LiveSplitter()
    assert [c for ch in text for c in one_by_one.feed(ch)] + one_by_one.finish() == split(text)


def test_a_chunk_leaves_once_the_next_cannot_join_it():
    splitter = LiveSplitter()
    assert splitter.feed("The kitchen lights are off now and the door is locked. I also") == []  # "I also" may join
    assert splitter.feed(" set the thermostat to ") == ["The kitchen lights are off now and the door is locked."]
    assert splitter.feed("twenty degrees.") == []  # the last sentence may go on ("degrees. Celsius"...)
    assert splitter.finish() == ["I also set the thermostat to twenty degrees."]


def test_a_line_break_after_a_sentence_ends_it_at_once():
    splitter = LiveSplitter()
    assert splitter.feed("Hello there.\n") == ["Hello there."]
    assert splitter.feed("Mr.\n") == []  # a title does not end a line's sentence
    assert splitter.feed("Smith arrived.\r") == []  # "\r\n" may be one break: wait for the next piece
    assert splitter.feed("\nMore") == ["Mr. Smith arrived."]
    assert splitter.finish() == ["More"]
