"""Sentences per second for normalize and split on a long mixed English text.

Run: python benchmarks/bench_text.py [--repeat N]
"""

from __future__ import annotations

import argparse
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="copies of the sample paragraph")
    args = parser.parse_args()
    text = PARAGRAPH * args.repeat
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


if __name__ == "__main__":
    main()
