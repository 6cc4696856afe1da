"""`soprano play` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `play` subcommand to the app."""

    @app.command("play", help="Not implemented yet.")
    def play_command() -> None:
        raise typer.Exit(1)
