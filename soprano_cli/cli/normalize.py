"""`soprano normalize`: written text in, spoken words out, one line at a time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from soprano_cli.cli import options as opt


def register(app: typer.Typer) -> None:
    """Add the `normalize` subcommand to the app."""

    @app.command("normalize", help="Write text as the words to be said: numbers, dates, money, symbols, abbreviations.")
    def normalize_command(
        files: Annotated[Optional[list[Path]], typer.Argument(
            help="Text files to read; stdin when none or '-'.", show_default=False)] = None,
        for_model: Annotated[bool, typer.Option(
            "--for-model", help="Also apply the model's cleanup: lowercase, its character set only.")] = False,
        # The old spelling, hidden: elsewhere --model takes a model folder or hub id.
        old_model_flag: Annotated[bool, typer.Option("--model", hidden=True)] = False,
        markdown: opt.Markdown = False,
        lexicon: opt.Lexicon = None,
        urls: opt.Urls = True,
        emails: opt.Emails = True,
        phone_numbers: opt.PhoneNumbers = True,
    ) -> None:
        from soprano_cli.text_input import iter_input_lines
        from soprano_cli.text import model_text, normalize

        from soprano_cli.text.markup import rendered_lines

        options = opt.text_options(markdown, lexicon, urls, emails, phone_numbers)

        def say(text: str) -> str:
            said = normalize(text, options)
            return model_text(said) if for_model or old_model_flag else said

        # [pause:] tags are kept as written and SSML becomes text with such tags (text/markup.py).
        for said in rendered_lines(iter_input_lines(files or []), say):
            sys.stdout.write(said + "\n")
            sys.stdout.flush()
