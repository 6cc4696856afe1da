"""`soprano normalize`: written text in, spoken words out, one line at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from soprano_cli.cli import options as opt


def register(app: typer.Typer) -> None:
    """Add the `normalize` subcommand to the app."""

    @app.command("normalize", help="Write text as the words to be said: numbers, dates, money, symbols, abbreviations.")
    def normalize_command(
        files: list[Path] = typer.Argument(None, help="Text files to read; stdin when none or '-'.", show_default=False),
        for_model: bool = typer.Option(False, "--for-model",
                                       help="Also apply the model's cleanup: lowercase, its character set only."),
        # The old spelling, hidden: elsewhere --model takes a model folder or hub id.
        old_model_flag: bool = typer.Option(False, "--model", hidden=True),
        markdown: opt.Markdown = False,
        lexicon: opt.Lexicon = None,
        urls: opt.Urls = True,
        emails: opt.Emails = True,
        phone_numbers: opt.PhoneNumbers = True,
    ) -> None:
        from soprano_cli.text_input import iter_input_lines
        from soprano_cli.text import model_text, normalize

        options = opt.text_options(markdown, lexicon, urls, emails, phone_numbers)
        for line in iter_input_lines(files or []):
            said = normalize(line, options)
            if for_model or old_model_flag:
                said = model_text(said)
            sys.stdout.write(said + "\n")
            sys.stdout.flush()
