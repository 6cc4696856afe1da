"""normalize's options: markdown and emoji, the user lexicon, classes left as written (issue 18)."""

from __future__ import annotations

import pytest

from soprano_cli.errors import InvalidParameterError
from soprano_cli.text import TextOptions, normalize
from soprano_cli.text.lexicon import from_words, parse
from soprano_cli.text.markdown import from_markdown

MARKDOWN = [
    ("# Title", "Title."), ("## Step 2 ##", "Step 2."), ("**bold** and *it* and _it_ and __b__", "bold and it and it and b"),
    ("see [the docs](https://x.io/a \"t\") now", "see the docs now"), ("![a cat](cat.png)", "a cat"),
    ("use `ls -la` here", "use ls -la here"), ("- item one", "item one"), ("* item", "item"), ("1. first", "first"),
    ("- [x] done", "done"), ("> quoted > text", "quoted > text"), ("| a | b |", "a, b"), ("|---|:--:|", ""),
    ("```python", ""), ("---", ""), ("~~old~~ new", "old new"), ("Great job! 🎉👍🏽", "Great job!"),
    ("a [^1] note", "a  note"), ("<https://x.io>", "https://x.io"), ("line<br>break", "line break"),
    ("snake_case_name", "snake_case_name"), ("2 * 3 * 4", "2 * 3 * 4"), ("[ref][1] text", "ref text"),
    ("**unclosed bold", "**unclosed bold"),
]


@pytest.mark.parametrize(("written", "plain"), MARKDOWN)
def test_markdown(written, plain):
    assert from_markdown(written) == plain


def test_markdown_in_normalize_is_an_option():
    assert normalize("**5** apples") == "**five** apples"  # plain normalize leaves markup alone
    assert normalize("**5** apples 🍎", TextOptions(markdown=True)) == "five apples"


LEXICON = "# names\nNguyen\tWin\nkubectl\tcube control\n/\\bk8s\\b/\tkubernetes\n/(?i)\\bsql\\b/\tsequel\n"


@pytest.mark.parametrize(("written", "spoken"), [
    ("Ask Nguyen.", "Ask Win."), ("run kubectl apply", "run cube control apply"), ("k8s and K8S", "kubernetes and K eight S"),
    ("SQL or sql", "sequel or sequel"), ("Nguyens", "Nguyens"),  # whole words only
])
def test_lexicon(written, spoken):
    assert normalize(written, TextOptions(lexicon=parse(LEXICON))) == spoken


@pytest.mark.parametrize("bad", ["no tab here", "/(/\tx", "\tempty written"])
def test_bad_lexicon_lines_name_the_line(bad):
    with pytest.raises(InvalidParameterError, match="line 1"):
        parse(bad)


def test_request_lexicons_are_words_and_bounded():
    assert normalize("a.b(c)", TextOptions(lexicon=from_words({"a.b(c)": "abc"}))) == "abc"  # no regex: escaped
    with pytest.raises(InvalidParameterError):
        from_words({"x": "y" * 500})


KEPT = TextOptions(urls=False, emails=False, phone_numbers=False)


@pytest.mark.parametrize(("written", "spoken"), [
    ("See https://x.io/a. Call 555-123-4567.", "See https://x.io/a. Call 555-123-4567."),
    ("Mail a@b.com, 5 times", "Mail a@b.com, five times"),
    ("(555) 123-4567 or +1 555 123 4567", "(555) 123-4567 or +1 555 123 4567"),
])
def test_classes_left_as_written(written, spoken):
    assert normalize(written, KEPT) == spoken


@pytest.mark.parametrize("written", ["See HTTPS://X.IO/a now", "Www.x.io", "mail a@b.com/docs/a now",
                                     "call +44 20 7946 0958", "1-800-555-0199", "(555) 123 4567"])
def test_a_class_left_as_written_is_what_its_rule_reads(written):
    # The kept patterns were copies of the reading rules' and had drifted: under --no-urls an
    # upper-case scheme was still read aloud, under --no-emails an address's path was read apart.
    assert normalize(written) != written
    assert normalize(written, KEPT) == written


@pytest.mark.parametrize("options", [TextOptions(markdown=True), KEPT, TextOptions(lexicon=parse(LEXICON))])
@pytest.mark.parametrize("text", [row[0] for row in MARKDOWN] + ["See www.x.io, mail a@b.co or call 555-123-4567!"])
def test_idempotent_with_options(options, text):
    once = normalize(text, options)
    assert normalize(once, options) == once
