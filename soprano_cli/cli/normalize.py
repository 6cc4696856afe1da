"""`soprano normalize` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `normalize` subcommand to the app."""

    @app.command("normalize", help="Not implemented yet.")
    def normalize_command() -> None:
        raise typer.Exit(1)
