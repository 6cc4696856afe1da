"""`soprano split` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `split` subcommand to the app."""

    @app.command("split", help="Not implemented yet.")
    def split_command() -> None:
        raise typer.Exit(1)
