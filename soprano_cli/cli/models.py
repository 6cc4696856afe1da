"""`soprano models`: download, list and remove Soprano models in the Hugging Face cache."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the `models` command group to the app."""
    models_app = typer.Typer(
        name="models",
        help="Download, list and remove Soprano models in the Hugging Face cache.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    models_app.command("download", help=(
        "Download a model from the hub into the cache (default: $SOPRANO_MODEL or ekwek/Soprano-1.1-80M) "
        "and print its folder. The hub client verifies every file it fetches."))(download_command)
    models_app.command("list", help="List cached Soprano models: id, size on disk and folder.")(list_command)
    models_app.command("rm", help="Remove a cached model (every revision) from the cache.")(rm_command)
    app.add_typer(models_app, name="models")


def download_command(
    model_id: Annotated[Optional[str], typer.Argument(
        metavar="ID", help="Hub id (owner/name) [default: $SOPRANO_MODEL or ekwek/Soprano-1.1-80M].",
        show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    from soprano_cli import models

    if quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    path = models.download(model_id)
    typer.echo(str(path))


def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Write a JSON array instead of a table.")] = False,
) -> None:
    import json

    from soprano_cli import models
    from soprano_cli.engine.checkpoint import hub_cache_dir

    found = models.list_models()
    if as_json:
        typer.echo(json.dumps([model.to_dict() for model in found], indent=2))
        return
    if not found:
        typer.echo(f"no Soprano models cached in {hub_cache_dir()}", err=True)
        return
    rows = [("ID", "SIZE", "PATH")] + [
        (model.repo_id + ("" if model.complete else " (incomplete)"), models.human_size(model.size_bytes),
         str(model.path)) for model in found]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    for row in rows:
        typer.echo(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}")


def rm_command(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="Hub id of a cached model (see `soprano models list`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    from soprano_cli import models
    from soprano_cli.errors import EXIT_FAILURE, InvalidParameterError

    model = models.find(model_id)
    if not yes:
        if sys.stdin is None or not sys.stdin.isatty():
            raise InvalidParameterError("refusing to delete without a terminal to confirm on; pass --yes", param="yes")
        if not typer.confirm(f"Remove {model.repo_id} ({models.human_size(model.size_bytes)})?", err=True):
            typer.echo("kept", err=True)
            raise typer.Exit(EXIT_FAILURE)
    freed = models.remove(model_id)
    typer.echo(f"removed {model_id} ({models.human_size(freed)})", err=True)
