"""The realistic lines of benchmarks/realistic_lines.tsv: at least 95 % read as a careful reader accepts (issue 18)."""

from __future__ import annotations

import re
from pathlib import Path

from soprano_cli.text import normalize

TSV = Path(__file__).parents[2] / "benchmarks" / "realistic_lines.tsv"


def _canonical(text: str) -> str:
    # As bench_text.canonical, without its NeMo-specific spelling rules: words only, lower case.
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def test_realistic_lines_are_read_as_accepted():
    rows = [line.split("\t") for line in TSV.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert len(rows) >= 160
    failed = [written for written, *accepted in rows
              if _canonical(normalize(written)) not in {_canonical(form) for form in accepted}]
    assert len(failed) <= 0.05 * len(rows), failed
