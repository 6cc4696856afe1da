"""`soprano normalize`: written text in, spoken words out, one line at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `normalize` subcommand to the app."""

    @app.command("normalize", help="Write text as the words to be said: numbers, dates, money, symbols, abbreviations.")
    def normalize_command(
        files: list[Path] = typer.Argument(None, help="Text files to read; stdin when none or '-'.", show_default=False),
        model: bool = typer.Option(False, "--model", help="Also apply the model's cleanup: lowercase, its character set only."),
    ) -> None:
        from soprano_cli.cli.textio import iter_input_lines
        from soprano_cli.text import model_text, normalize

        for line in iter_input_lines(files or []):
            said = normalize(line)
            if model:
                said = model_text(said)
            sys.stdout.write(said + "\n")
            sys.stdout.flush()
