"""`soprano synth` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `synth` subcommand to the app."""

    @app.command("synth", help="Not implemented yet.")
    def synth_command() -> None:
        raise typer.Exit(1)
