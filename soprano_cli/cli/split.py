"""`soprano split`: text in, one speakable chunk per line out (or JSON Lines with --json)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the `split` subcommand to the app."""

    @app.command("split", help="Split text into sentences and chunks of about --min-seconds to --max-seconds of speech.")
    def split_command(
        files: Annotated[Optional[list[Path]], typer.Argument(
            help="Text files to read; stdin when none or '-'.", show_default=False)] = None,
        as_json: Annotated[bool, typer.Option("--json", help='Write JSON Lines: {"text": ..., "seconds": ...}.')] = False,
        min_seconds: Annotated[float, typer.Option(
            "--min-seconds", help="Merge chunks shorter than this with a neighbour.")] = 2.0,
        max_seconds: Annotated[float, typer.Option(
            "--max-seconds", help="Break chunks longer than this at clauses, then words.")] = 30.0,
    ) -> None:
        import json

        from soprano_cli.text_input import iter_input_lines
        from soprano_cli.errors import InvalidParameterError
        from soprano_cli.text import estimate_seconds, incremental_split

        if min_seconds < 0:
            raise InvalidParameterError("--min-seconds must be 0 or more", param="min_seconds")
        if max_seconds <= 0 or max_seconds < min_seconds:
            raise InvalidParameterError("--max-seconds must be positive and at least --min-seconds", param="max_seconds")
        for chunk in incremental_split(iter_input_lines(files or []), min_seconds, max_seconds):
            if as_json:
                line = json.dumps({"text": chunk, "seconds": round(estimate_seconds(chunk), 2)}, ensure_ascii=False)
            else:
                line = chunk
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
