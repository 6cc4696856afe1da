"""Speed of normalize and split, and accuracy on public test sets you point it at.

Run: python benchmarks/bench_text.py [--repeat N] [--nemo DIR] [--golden FILE] [--realistic] [--failures]

--nemo DIR: NeMo-text-processing's English TN cases
(tests/nemo_text_processing/en/data_text_normalization/ in a clone of
github.com/NVIDIA/NeMo-text-processing): one `written~spoken` case a line in
test_cases_<class>.txt. Both sides are compared canonicalized (lower case, punctuation
and hyphens as spaces), since normalize keeps the writer's case and punctuation.
--golden FILE: pySBD's benchmarks/english_golden_rules.py (github.com/nipunsadvilkar/pySBD),
scored with split_sentences. Neither set is kept in this repository.
--realistic: our own news, finance, recipe, tech and chat lines (realistic_lines.tsv beside
this file), each with the readings a careful reader accepts; reported per section.
"""

from __future__ import annotations

import argparse
import ast
import re
import time
from pathlib import Path

from soprano_cli.text import normalize, split, split_sentences

PARAGRAPH = """\
On January 5, 2021, Dr. Smith paid $2,450.75 for 3 tickets to the U.S. Open at 7:30 p.m. and said it was worth it.
The company's revenue grew 12.5% to €3.2 billion in 2023, up from €2.8B in 2022; analysts expected 10-15% growth.
Call 555-123-4567 or e-mail support@example.com, and visit https://www.example.com/help for the FAQ.
World War II ended in 1945, and Louis XIV ruled France for 72 years, from 1643 to 1715.
The recipe needs 1/2 cup of sugar, 250 ml of milk and 2 eggs; bake at 180°C (356°F) for 25 min.
He ran 26.2 mi in 3 hrs, about 8.7 mph, which is roughly 14 km/h — not bad for a 60-year-old!
“It’s the 21st century,” she said… “We shouldn’t still be arguing about the ’90s.”
If x > 5 and y ≤ 10, then 6 × 7 = 42 and 2^10 = 1024, e.g. in Chapter IV of the book.
Mr. and Mrs. Brown moved to 221B Baker St. in London, about 3,500 miles from St. Louis.
The FBI, the CIA and NASA met on 2024-03-15 at 09:00 to review 16 GB of data at 3.5 GHz.
"""

# The 18 classes of NeMo's English TN cases; the other files there (punctuation,
# normalize_with_audio) test options and audio-based choices, not written forms.
NEMO_CLASSES = (
    "address cardinal date decimal electronic fraction math measure money ordinal range roman "
    "serial special_text telephone time whitelist word"
).split()


_LETTERS = re.compile(r"\b[a-z](?: [a-z]\b)+")
_CAPS = re.compile(r"\b[A-Z]{2,3}\b")


def canonical(text: str) -> str:
    """The reading without its spelling conventions, so that only the words said are compared.

    Short words in capitals are spelled ("EST" is "E S T"); lower case; anything but letters and digits is a space; spelled letters are joined ("A M"
    and "AM" are said alike); "and" is dropped, since "one hundred and one" against "one
    hundred one" and "five dollars and ten cents" against "five dollars ten cents" are house
    styles (ours leaves "and" out of numbers).
    """
    # NeMo writes spelled letters in capitals ("PM EST", "IP"), ours spaced ("P M E S T"):
    # short words in capitals are spelled out first, so that both join alike below.
    text = _CAPS.sub(lambda m: " ".join(m.group(0)), text)
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    joined = _LETTERS.sub(lambda m: m.group(0).replace(" ", ""), " ".join(w for w in words if w != "and"))
    return joined


def nemo_cases(directory: Path) -> dict[str, list[tuple[str, str]]]:
    cases = {}
    for name in NEMO_CLASSES:
        path = directory / f"test_cases_{name}.txt"
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if "~" in line:
                written, spoken = line.split("~", 1)
                rows.append((written, spoken))
        cases[name] = rows
    return cases


def score_nemo(directory: Path, show_failures: bool) -> None:
    total = passed_all = 0
    print(f"{'class':<13} {'passed':>6} {'cases':>5} {'%':>6}")
    for name, rows in nemo_cases(directory).items():
        passed = 0
        for written, spoken in rows:
            said = normalize(written)
            if canonical(said) == canonical(spoken):
                passed += 1
            elif show_failures:
                print(f"  FAIL {name}: {written!r} -> {said!r} (NeMo: {spoken!r})")
        total += len(rows)
        passed_all += passed
        print(f"{name:<13} {passed:>6} {len(rows):>5} {100 * passed / max(len(rows), 1):>5.1f}%")
    print(f"{'all':<13} {passed_all:>6} {total:>5} {100 * passed_all / max(total, 1):>5.1f}%")


REALISTIC = Path(__file__).with_name("realistic_lines.tsv")


def score_realistic(path: Path, show_failures: bool) -> None:
    sections: dict[str, list[int]] = {}
    section = "lines"
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if not line.strip() or line.startswith("#"):
            continue
        written, *accepted = line.split("\t")
        said = normalize(written)
        ok = canonical(said) in {canonical(form) for form in accepted}
        sections.setdefault(section, [0, 0])[0] += ok
        sections[section][1] += 1
        if not ok and show_failures:
            print(f"  FAIL {section}: {written!r} -> {said!r} (accepted: {accepted[0]!r})")
    print(f"{'realistic':<44} {'passed':>6} {'lines':>5} {'%':>6}")
    total = [0, 0]
    for name, (passed, count) in sections.items():
        total[0] += passed
        total[1] += count
        print(f"{name:<44} {passed:>6} {count:>5} {100 * passed / count:>5.1f}%")
    print(f"{'all':<44} {total[0]:>6} {total[1]:>5} {100 * total[0] / max(total[1], 1):>5.1f}%")


def score_golden(path: Path, show_failures: bool) -> None:
    # The file is a module holding one literal list; read it as data, never run it.
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rules = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign))
    passed = 0
    for number, (text, expected) in enumerate(rules, 1):
        got = split_sentences(text)
        if got == expected:
            passed += 1
        elif show_failures:
            print(f"  FAIL rule {number}: {got!r} (expected {expected!r})")
    print(f"golden rules: {passed} / {len(rules)}")


def score_speed(repeat: int) -> None:
    text = PARAGRAPH * repeat
    sentences = split_sentences(text)
    words = len(text.split())

    normalize(PARAGRAPH)  # warm the regex caches
    start = time.perf_counter()
    for sentence in sentences:
        normalize(sentence)
    normalize_s = time.perf_counter() - start

    start = time.perf_counter()
    chunks = split(text)
    split_s = time.perf_counter() - start

    print(f"text: {len(sentences)} sentences, {words} words, {len(text)} characters")
    print(f"normalize: {len(sentences) / normalize_s:,.0f} sentences/s ({normalize_s / len(sentences) * 1e6:.0f} µs/sentence)")
    print(f"split:     {len(sentences) / split_s:,.0f} sentences/s ({split_s / len(sentences) * 1e6:.0f} µs/sentence, {len(chunks)} chunks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="copies of the sample paragraph")
    parser.add_argument("--nemo", type=Path, help="folder of NeMo's test_cases_<class>.txt (English TN)")
    parser.add_argument("--golden", type=Path, help="pySBD's english_golden_rules.py")
    parser.add_argument("--realistic", action="store_true", help="score benchmarks/realistic_lines.tsv")
    parser.add_argument("--failures", action="store_true", help="print every failed case")
    args = parser.parse_args()
    if args.nemo:
        score_nemo(args.nemo, args.failures)
    if args.golden:
        score_golden(args.golden, args.failures)
    if args.realistic:
        score_realistic(REALISTIC, args.failures)
    score_speed(args.repeat)


if __name__ == "__main__":
    main()
