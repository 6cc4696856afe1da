"""`soprano normalize` and `soprano split` driven as subprocesses: pipes, files, errors, flushing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from soprano_cli.errors import EXIT_INPUT, EXIT_USAGE

SOPRANO = [sys.executable, "-m", "soprano_cli"]


def run(args: list[str], stdin: bytes = b"", **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(SOPRANO + args, input=stdin, capture_output=True, timeout=30, **kwargs)


def test_normalize_stdin():
    done = run(["normalize"], b"I have 5 apples.\nDr. Smith paid $3.50.\n\nBye\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        "I have five apples.", "Doctor Smith paid three dollars and fifty cents.", "", "Bye",
    ]


def test_normalize_for_model_flag():
    done = run(["normalize", "--for-model"], b"Dr. Smith: \"Hi\" (5)\n")
    assert done.stdout.decode() == "doctor smith. hi five\n"


def test_normalize_model_spelling_is_hidden_but_still_works():
    # Broke: normalize's --model was a flag while --model elsewhere takes a PATH; it is --for-model now.
    assert run(["normalize", "--model"], b"Hi (5)\n").stdout.decode() == "hi five\n"
    help_text = run(["normalize", "--help"]).stdout.decode()
    assert "--for-model" in help_text and "--model" not in help_text


def test_normalize_files_and_dash(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_bytes(b"\xef\xbb\xbfOne 1\r\n")  # a BOM and a CRLF line ending
    second.write_text("Two 2\n")
    done = run(["normalize", str(first), "-", str(second)], b"Stdin 3\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == ["One one", "Stdin three", "Two two"]


def test_invalid_utf8_is_one_line_and_exit_code_3():
    done = run(["normalize"], b"fine\n\xff\n")
    assert done.returncode == EXIT_INPUT
    assert done.stdout == b"fine\n"
    message = done.stderr.decode()
    assert message.count("\n") == 1 and "Traceback" not in message
    assert "stdin" in message and "line 2" in message and "byte offset 5" in message


def test_invalid_utf8_in_a_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9\n")
    done = run(["split", str(bad)])
    assert done.returncode == EXIT_INPUT
    assert str(bad) in done.stderr.decode() and "line 1" in done.stderr.decode()


def test_missing_file_is_an_input_error(tmp_path):
    done = run(["normalize", str(tmp_path / "nope.txt")])
    assert done.returncode == EXIT_INPUT
    assert "nope.txt" in done.stderr.decode() and "Traceback" not in done.stderr.decode()


@pytest.mark.parametrize("command", ["normalize", "split"])
def test_line_in_line_out_before_stdin_closes(command):
    """A line written to the pipe comes back before the writer closes stdin."""
    process = subprocess.Popen(SOPRANO + [command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        process.stdin.write(b"It is 5 p.m. now.\n")
        process.stdin.flush()
        first = process.stdout.readline()
        assert first.strip() in (b"It is five P M now.", b"It is 5 p.m. now.")
        process.stdin.write(b"Bye.\n")
        process.stdin.close()
        assert process.stdout.read().strip() == b"Bye."
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            stream.close()


def test_split_plain():
    done = run(["split"], b"Hello there. How are you?\nA long line that\nwraps here. End\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == ["Hello there. How are you?", "A long line that wraps here. End"]


def test_split_json():
    done = run(["split", "--json"], b"Hello there. How are you today, my friend?\n")
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["text"] for r in records] == ["Hello there. How are you today, my friend?"]
    assert 1 < records[0]["seconds"] < 6


def test_split_min_max_seconds():
    text = " ".join(f"Sentence {i} is short." for i in range(20)).encode()
    few = run(["split", "--min-seconds", "5", "--max-seconds", "30"], text).stdout.decode().splitlines()
    many = run(["split", "--min-seconds", "0", "--max-seconds", "30"], text).stdout.decode().splitlines()
    assert len(many) == 20 and len(few) < len(many)
    assert " ".join(few).split() == text.decode().split()


def test_split_rejects_min_above_max():
    done = run(["split", "--min-seconds", "10", "--max-seconds", "5"], b"x\n")
    assert done.returncode == EXIT_USAGE
    assert "max-seconds" in done.stderr.decode()


def test_closed_pipe_ends_quietly():
    # The producers' own complaints (a `head: write error` when normalize exits first) are not ours.
    shell = f"yes 'Hello 5.' 2>/dev/null | head -c 100000 2>/dev/null | {sys.executable} -m soprano_cli normalize | head -1"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=30)
    assert done.stdout == b"Hello five.\n"
    assert done.stderr == b""


def test_text_commands_import_no_torch():
    code = "import sys; from soprano_cli.cli import app; print(any(m in sys.modules for m in ('torch', 'numpy')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, env={**os.environ})
    assert done.stdout.strip() == b"False"


def test_normalize_markdown_lexicon_and_kept_classes(tmp_path):
    # Issue 18: markdown is an option of normalize (off by default), the lexicon a file or $SOPRANO_LEXICON.
    lexicon = tmp_path / "words.tsv"
    lexicon.write_text("# names\nNguyen\tWin\n", encoding="utf-8")
    text = b"## Hi **Nguyen** 5\nCall 555-123-4567.\n"
    assert run(["normalize"], text).stdout.decode().splitlines()[0] == "hash hash Hi **Nguyen** five"  # markup read as written
    done = run(["normalize", "--markdown", "--lexicon", str(lexicon), "--no-phone-numbers"], text)
    assert done.stdout.decode().splitlines() == ["Hi Win five.", "Call 555-123-4567."]
    env = {**os.environ, "SOPRANO_LEXICON": str(lexicon)}
    assert run(["normalize"], b"Nguyen\n", env=env).stdout.decode() == "Win\n"


def test_normalize_bad_lexicon_is_a_usage_error(tmp_path):
    lexicon = tmp_path / "bad.tsv"
    lexicon.write_text("no tab\n", encoding="utf-8")
    done = run(["normalize", "--lexicon", str(lexicon)], b"hi\n")
    assert done.returncode == EXIT_USAGE and b"line 1" in done.stderr
    assert run(["normalize", "--lexicon", str(tmp_path / "missing.tsv")], b"hi\n").returncode == EXIT_USAGE
