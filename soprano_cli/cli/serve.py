"""`soprano serve` (placeholder until its issue lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `serve` subcommand to the app."""

    @app.command("serve", help="Not implemented yet.")
    def serve_command() -> None:
        raise typer.Exit(1)


def webui_main() -> None:
    """`soprano-webui`: the daemon on port 7860, as upstream's web UI."""
    raise SystemExit(1)
