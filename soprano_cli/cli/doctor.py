"""`soprano doctor`: what this machine offers soprano, one line per check with a mark and a hint."""

from __future__ import annotations

from typing import Annotated

import typer

MARKS = {"ok": "✓", "warn": "!", "fail": "✗", "info": "-"}
COLORS = {"ok": "green", "warn": "yellow", "fail": "red", "info": "blue"}


def register(app: typer.Typer) -> None:
    """Add the `doctor` subcommand to the app."""
    app.command("doctor", help=(
        "Check Python, torch, devices, backends, CPU features, audio output, ffmpeg, the model cache and the daemon. "
        "Exits 1 when a check fails."))(doctor_command)


def doctor_command(
    as_json: Annotated[bool, typer.Option("--json", help="Write the checks as a JSON array.")] = False,
) -> None:
    import json
    import sys

    from soprano_cli.doctor import FAIL, run_checks
    from soprano_cli.errors import EXIT_FAILURE

    results = run_checks()
    if as_json:
        typer.echo(json.dumps([result.to_dict() for result in results], indent=2, ensure_ascii=False))
    else:
        from rich.console import Console
        from rich.markup import escape

        console = Console(highlight=False, soft_wrap=True)
        ascii_only = (sys.stdout.encoding or "").lower().replace("-", "") not in ("utf8", "utf16")
        for result in results:
            mark = {"ok": "+", "fail": "x"}.get(result.status, MARKS[result.status]) if ascii_only else MARKS[result.status]
            console.print(f"[{COLORS[result.status]}]{mark}[/] {result.name:<21} {escape(result.detail)}")
            if result.hint:
                console.print(f"  {'':<21} [dim]hint: {escape(result.hint)}[/]")
    if any(result.status == FAIL for result in results):
        raise typer.Exit(EXIT_FAILURE)
