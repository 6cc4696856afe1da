"""split_sentences, split, incremental_split, estimate_seconds, and text in pieces (LiveSplitter, LiveSentences)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soprano_cli.text import estimate_seconds, incremental_split, split, split_sentences
from soprano_cli.text.pipeline import LiveSentences, sentences_from_text
from soprano_cli.text.live import LiveSplitter

BOUNDARIES = [
    # Issue 18: inline lists, spaced ellipses (never a sentence of dots), P.M. before a title, "Dr. Who".
    ("1. The first item 2. The second item", ["1. The first item", "2. The second item"]),
    ("1) The first item 2) The second item", ["1) The first item", "2) The second item"]),
    ("• 9. The first item • 10. The second item", ["• 9. The first item", "• 10. The second item"]),
    ("a. The first item b. The second item", ["a. The first item", "b. The second item"]),
    ("Wait . . . what I mean . . . I did not.", ["Wait . . . what I mean . . . I did not."]),
    ("It ended. . . . The next one began.", ["It ended.", ". . . The next one began."]),
    # Leading spaced dots open the first sentence (were each a sentence of their own: the text after a live cut).
    (". . . The next one began.", [". . . The next one began."]),
    ("He left the bank at 6 P.M. Mr. Smith then went home.", ["He left the bank at 6 P.M.", "Mr. Smith then went home."]),
    ("At 5 a.m. Mr. Smith went to the bank.", ["At 5 a.m. Mr. Smith went to the bank."]),
    ("I met Dr. Who. He was nice.", ["I met Dr. Who.", "He was nice."]),
    ('"Bohr [...] used stairways [...]" (Smith 55).', ['"Bohr [...] used stairways [...]" (Smith 55).']),
    ("Hello world. How are you?", ["Hello world.", "How are you?"]),
    ("Stop! Who goes there?", ["Stop!", "Who goes there?"]),
    ("Mr. Smith went to Washington. He arrived late.", ["Mr. Smith went to Washington.", "He arrived late."]),
    ("Mrs. Brown and Dr. Jones met. They talked.", ["Mrs. Brown and Dr. Jones met.", "They talked."]),
    ("I live in the U.S. The weather is nice.", ["I live in the U.S.", "The weather is nice."]),
    ("The U.S. Army is large.", ["The U.S. Army is large."]),
    ("He woke at 7 a.m. and left.", ["He woke at 7 a.m. and left."]),
    ("We met at 5 p.m. Then we ate.", ["We met at 5 p.m.", "Then we ate."]),
    ("Pi is 3.14. That is all.", ["Pi is 3.14.", "That is all."]),
    ("It costs $5.50 today. Buy it.", ["It costs $5.50 today.", "Buy it."]),
    ("Bring fruit, e.g. apples. Thanks.", ["Bring fruit, e.g. apples.", "Thanks."]),
    ("Use tools, i.e. hammers, daily.", ["Use tools, i.e. hammers, daily."]),
    ("Wait... What happened?", ["Wait...", "What happened?"]),
    ("Wait... and then it fell.", ["Wait... and then it fell."]),
    ("He paused… Then he spoke.", ["He paused…", "Then he spoke."]),
    ('"Why?" he asked. She smiled.', ['"Why?" he asked.', "She smiled."]),
    ('She said, "Go home." Then she left.', ['She said, "Go home."', "Then she left."]),
    ("He left (quietly). Then we ate.", ["He left (quietly).", "Then we ate."]),
    ("(See the note.) It matters.", ["(See the note.)", "It matters."]),
    ("J. K. Rowling wrote it. Fans love it.", ["J. K. Rowling wrote it.", "Fans love it."]),
    ("George W. Bush spoke. People listened.", ["George W. Bush spoke.", "People listened."]),
    ("Steps: 1. Mix. 2. Bake.", ["Steps: 1. Mix.", "2. Bake."]),
    ("1. First item", ["1. First item"]),
    ("See No. 5 for details. Done.", ["See No. 5 for details.", "Done."]),
    ("Read p. 12 first. Then rest.", ["Read p. 12 first.", "Then rest."]),
    ("It was Jan. 5 when it snowed.", ["It was Jan. 5 when it snowed."]),
    ("Apples, pears, etc. Then bread.", ["Apples, pears, etc.", "Then bread."]),
    ("Cats vs. dogs is old. Pick one.", ["Cats vs. dogs is old.", "Pick one."]),
    ("He earned a Ph.D. in physics.", ["He earned a Ph.D. in physics."]),
    ("She lives on Baker St. It is quiet.", ["She lives on Baker St.", "It is quiet."]),
    ("St. Louis is big. Visit it.", ["St. Louis is big.", "Visit it."]),
    ("Really?! No way.", ["Really?!", "No way."]),
    ("Version 2.0 is out. Update now.", ["Version 2.0 is out.", "Update now."]),
    ("Visit example.com. It is free.", ["Visit example.com.", "It is free."]),
    ("One.\n\nTwo", ["One.", "Two"]),
    ("First paragraph\n\nSecond paragraph", ["First paragraph", "Second paragraph"]),
    ("A line that wraps\nonto the next. Done.", ["A line that wraps onto the next.", "Done."]),
    ("He said no. 5 people agreed.", ["He said no.", "5 people agreed."]),
    ("Prof. Xavier teaches. Students learn.", ["Prof. Xavier teaches.", "Students learn."]),
    ("Is it 10 a.m. or 10 p.m.? Unclear.", ["Is it 10 a.m. or 10 p.m.?", "Unclear."]),
    ("Born in the U.K. in 1990, she moved.", ["Born in the U.K. in 1990, she moved."]),
    ("", []),
    ("   ", []),
    ("No punctuation at all", ["No punctuation at all"]),
]


@pytest.mark.parametrize(("text", "sentences"), BOUNDARIES)
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_enough_boundary_cases():
    assert len(BOUNDARIES) >= 40


def test_estimate_seconds():
    assert estimate_seconds("") == 0
    short, longer = estimate_seconds("Hello."), estimate_seconds("Hello there, my old friend, how are you doing today?")
    assert 0.3 < short < 1.5 < longer < 6
    # Additive over tokens, so chunk lengths can be summed.
    assert estimate_seconds("one two. three") == pytest.approx(estimate_seconds("one two.") + estimate_seconds("three"))
    # About 2.5 to 3 words a second on plain prose.
    prose = "the quick brown fox jumps over the lazy dog " * 10
    assert 2.3 < len(prose.split()) / estimate_seconds(prose) < 3.5


def test_short_sentences_merge():
    assert split("Hi. Yes. No. Maybe so.") == ["Hi. Yes. No. Maybe so."]


def test_long_sentences_break_at_clauses_then_words():
    clause = "the committee discussed the proposal at great length"
    sentence = ", ".join([clause] * 12) + "."
    chunks = split(sentence, max_seconds=10)
    assert len(chunks) > 1
    assert all(estimate_seconds(c) <= 10 for c in chunks)
    assert all(c.endswith((",", ".")) for c in chunks)
    words = " ".join(["word"] * 200)
    chunks = split(words, max_seconds=5)
    assert all(estimate_seconds(c) <= 5 for c in chunks)
    assert " ".join(chunks).split() == words.split()


def test_chunks_fit_the_window():
    text = " ".join(f"Sentence number {i} has a few words in it." for i in range(40))
    chunks = split(text, min_seconds=2, max_seconds=8)
    assert all(2 <= estimate_seconds(c) <= 8 for c in chunks[:-1])
    assert " ".join(chunks).split() == text.split()


def test_split_loses_and_reorders_nothing():
    text = "Dr. Smith said: “It’s 5 p.m.” Then… nothing!\n\nNew paragraph here\nwrapped line. End"
    assert " ".join(split(text)).split() == text.split()


def test_incremental_equals_batch():
    text = "A line without an end\ncontinues here. Another sentence.\nMr.\nSmith arrived.\n\nNext paragraph!\nLast line"
    assert split(text) == list(incremental_split(text.splitlines()))
    assert split(text) == list(incremental_split(line + "\n" for line in text.split("\n")))


def test_incremental_yields_before_input_ends():
    def lines():
        yield "The first sentence is here."
        raise AssertionError("read past the first complete line")

    stream = incremental_split(lines())
    assert next(stream) == "The first sentence is here."


def test_a_line_without_terminal_punctuation_waits_for_the_next():
    seen = []

    def lines():
        for line in ["Hard wrapped", "prose ends here.", "More"]:
            seen.append(line)
            yield line

    stream = incremental_split(lines())
    assert next(stream) == "Hard wrapped prose ends here."
    assert seen == ["Hard wrapped", "prose ends here."]


def test_a_title_at_line_end_does_not_end_the_segment():
    assert split("I met Mr.\nSmith today.") == ["I met Mr. Smith today."]


# -- text in pieces, as a language model streams it (the WebSocket endpoint) ---------------------


def live(text: str, pieces: list[int] | None = None, **options) -> list[str]:
    """What LiveSentences says for `text` sent in pieces of the given sizes (default: one character each)."""
    sentences = LiveSentences(**{"normalize": False, **options})
    out, at = [], 0
    for size in pieces or [1] * len(text):
        out += sentences.push(text[at:at + size])
        at += size
    out += sentences.push(text[at:])
    return out + sentences.flush()


@pytest.mark.parametrize("text, expected", BOUNDARIES)
def test_live_sentences_end_where_split_sentences_ends_them(text, expected):
    assert live(text) == expected


@given(st.lists(st.integers(1, 9), max_size=40))
@settings(max_examples=60, deadline=None)
def test_the_pieces_do_not_matter(pieces):
    text = "Dr. Who met Mr. Smith at 5 p.m. Then they left.\nIt cost $3.50, e.g. a lot! Did it?\n\nThe end"
    assert live(text, pieces) == live(text, [len(text)])


def test_a_sentence_leaves_once_the_next_word_is_whole():
    sentences = LiveSentences(normalize=False)
    assert sentences.push("Hello world.") == []
    assert sentences.push(" Dr") == []  # "Dr." could still be "Dr.5"? no: the next word is not whole yet
    assert sentences.push(". ") == ["Hello world."]
    assert sentences.push("Who is here?") == []
    assert sentences.push("\n") == ["Dr. Who is here?"]  # a newline ends a line: no need to wait
    assert sentences.flush() == []


def test_normalized_as_in_the_whole_text():
    text = "I met Dr. Who at 5 p.m. It cost $3.50. Elm Dr. Then we went home."
    assert live(text, normalize=True) == [s for line in [text] for s in sentences_from_text(
        "\n".join(["I met Dr. Who at 5 p.m.", "It cost $3.50.", "Elm Dr.", "Then we went home."]))]


def test_a_long_run_without_an_end_is_cut_at_a_space():
    lines = LiveSplitter(max_chars=20)
    got = lines.feed("one two three four five six seven")
    assert got == ["one two three four"]  # ends its segment: "five" would pass 20 characters
    assert lines.finish() == ["five six seven"]
