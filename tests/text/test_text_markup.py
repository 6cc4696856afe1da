"""Pause tags and the SSML subset (text/markup.py) and the Script that carries their pauses (text/script.py)."""

from __future__ import annotations

import pytest

from soprano_cli.text.markup import MarkupError, Pause, pieces, say_as, ssml_pieces
from soprano_cli.text.script import Script, script_from_text


@pytest.mark.parametrize("line, expected", [
    ("Hello [pause:1.5s] world", ["Hello ", Pause(1.5), " world"]),
    ("a[pause:250ms]b[PAUSE: 2 S]c", ["a", Pause(0.25), "b", Pause(2.0), "c"]),
    ("[pause:1]", ["", Pause(1.0), ""]),  # seconds when no unit is given
    ("no tags [pause:soon] here", ["no tags [pause:soon] here"]),  # not a tag: spoken as written
    ("[pause:-1s] [pause:]", ["[pause:-1s] [pause:]"]),
])
def test_pause_tags(line, expected):
    assert list(pieces([line])) == expected


def test_a_pause_over_the_limit_is_rejected():
    with pytest.raises(MarkupError, match="longer than 10 seconds"):
        list(pieces(["wait [pause:11s]"]))


SSML_CASES = [
    ('<speak>Hi <break time="500ms"/> there.</speak>', ["Hi ", Pause(0.5), " there."]),
    ('<speak>a<break time="1.5s"/>b<break strength="weak"/>c<break/>d</speak>',
     ["a", Pause(1.5), "b", Pause(0.25), "c", Pause(0.5), "d"]),
    ("<speak><p><s>One.</s><s>Two.</s></p></speak>",
     [Pause(0.0), Pause(0.0), "One.", Pause(0.0), Pause(0.0), "Two.", Pause(0.0), Pause(0.0)]),
    ('<speak>The <sub alias="World Wide Web">WWW</sub>.</speak>', ["The World Wide Web."]),
    ('<speak xmlns="http://www.w3.org/2001/10/synthesis" version="1.1"><prosody rate="fast">Quick <emphasis>now</emphasis></prosody></speak>',
     ["Quick now"]),  # unknown elements: ignored, their text spoken
]


@pytest.mark.parametrize("document, expected", SSML_CASES)
def test_ssml(document, expected):
    assert [p for p in ssml_pieces(document) if p != ""] == expected


@pytest.mark.parametrize("document, message", [
    ("<speak>Hello", "not well-formed"),
    ("<speak>a</speak><speak>b</speak>", "not well-formed"),
    ('<speak><break time="5 parsecs"/></speak>', "not a duration"),
    ('<speak><break time="20s"/></speak>', "longer than 10 seconds"),
    ('<speak><break strength="huge"/></speak>', "strength 'huge'"),
    ('<!DOCTYPE speak [<!ENTITY a "aaaa">]><speak>&a;&a;</speak>', "DTD or entities"),
    ('<!DOCTYPE speak SYSTEM "file:///etc/passwd"><speak>x</speak>', "DTD or entities"),
    ("<voice>Hi</voice>", "root element"),
    ("<speak>" + "<s>" * 150 + "deep" + "</s>" * 150 + "</speak>", "nested more than 100"),
])
def test_bad_ssml_is_one_clear_error(document, message):
    with pytest.raises(MarkupError, match=message):
        ssml_pieces(document)


@pytest.mark.parametrize("text, kind, fmt, said", [
    ("abc1", "characters", None, "A B C one"),
    ("1,234", "cardinal", None, "one thousand two hundred thirty four"),
    ("-7", "cardinal", None, "minus seven"),
    ("3", "ordinal", None, "third"),
    ("21st", "ordinal", None, "twenty first"),
    ("12/25/2024", "date", None, "December twenty fifth, twenty twenty four"),
    ("25.12.2024", "date", "dmy", "December twenty fifth, twenty twenty four"),
    ("1999", "date", "y", "nineteen ninety nine"),
    ("3/7", "date", "md", "March seventh"),
    ("+1 555-123-4567", "telephone", None, "plus one, five five five, one two three, four five six seven"),
    ("many", "cardinal", None, "many"),  # cannot be read so: left to the normalizer
    ("13/45/2024", "date", None, "13/45/2024"),
    ("hello", "unknown-kind", None, "hello"),
])
def test_say_as(text, kind, fmt, said):
    assert say_as(text, kind, fmt) == said


def test_script_puts_pauses_between_the_right_sentences():
    sentences, script = script_from_text("[pause:0.5s]First one. Second one.[pause:1s]Third one.[pause:2s]",
                                         min_seconds=0.0)
    assert sentences == ["First one.", "Second one.", "Third one."]
    assert [script.pause_before(i) for i in range(3)] == [0.5, 0.0, 1.0]
    assert script.after_last == 2.0


def test_script_normalizes_ssml_text_and_says_as():
    # Plain "3/4" would be read "three quarters"; say-as says it is a date.
    sentences, script = script_from_text(
        '<speak><s>I have <say-as interpret-as="cardinal">12</say-as> cats.</s>'
        '<break time="700ms"/><s>Call <say-as interpret-as="telephone">555-1234</say-as> on <say-as interpret-as="date" format="md">3/4</say-as>.</s></speak>',
        min_seconds=0.0)
    assert sentences == ["I have twelve cats.", "Call five five five, one two three four on March fourth."]
    assert script.pause_before(1) == 0.7


def test_script_reads_lines_lazily():
    """A pause on a later line is noted before the sentence after it, and each sentence is yielded
    before later lines are read (synth on a live stdin)."""
    read = []

    def lines():
        for line in ["Hello there.", "[pause:1s]", "Goodbye now."]:
            read.append(line)
            yield line

    script = Script(lines(), min_seconds=0.0)
    iterator = iter(script)
    assert next(iterator) == "Hello there."
    assert read == ["Hello there."]
    assert next(iterator) == "Goodbye now."
    assert script.pause_before(1) == 1.0 and script.pause_before(0) == 0.0
    assert list(iterator) == [] and script.after_last == 0.0


def test_pauses_around_unspeakable_text_carry_to_the_next_sentence():
    sentences, script = script_from_text("One.[pause:1s] 🙂 [pause:0.5s]Two.", min_seconds=0.0)
    assert sentences == ["One.", "Two."]
    assert script.pause_before(1) == 1.5


@pytest.mark.parametrize("text", [
    '<speak><p>I have <say-as interpret-as="cardinal">12</say-as> cats.<break time="700ms"/>On 3/4 too.</p>\n'
    '<s>Dr. Smith came.</s><s>He left</s><break strength="x-strong"/></speak>',
    "Hello [pause:1.5s] 42 worlds.\nA second line.[pause:250ms]",
])
def test_normalized_markup_speaks_as_the_original(text):
    """`soprano normalize` keeps pauses as tags, so synth speaks its output as it speaks the input."""
    from soprano_cli.text import normalize
    from soprano_cli.text.markup import rendered_lines

    normalized = "\n".join(rendered_lines(text.splitlines(), normalize))
    assert "<" not in normalized
    original, original_script = script_from_text(text, min_seconds=0.0)
    again, again_script = script_from_text(normalized, min_seconds=0.0)
    assert again == original
    assert [again_script.pause_before(i) for i in range(len(again))] == \
        [original_script.pause_before(i) for i in range(len(original))]
    assert again_script.after_last == original_script.after_last


def test_pauses_in_a_row_are_bounded_like_one_pause():
    """Silence must stay in proportion to text: 400 tags in a row were an hour of silence to encode."""
    assert script_from_text("a.[pause:6s][pause:4s]b.")[1].pause_before(1) == 10.0
    with pytest.raises(MarkupError, match="in a row"):
        script_from_text("a." + "[pause:10s]" * 400 + "b.")
    with pytest.raises(MarkupError, match="in a row"):
        script_from_text('<speak>a.<break time="9s"/><s></s><break strength="x-strong"/>b.</speak>')
