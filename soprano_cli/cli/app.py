"""The `soprano` command: builds the typer app and turns library errors into exit codes."""

from __future__ import annotations

import os
import sys

import click
import typer

from soprano_cli import errors

app = typer.Typer(
    name="soprano",
    help="Fast on-device Soprano text-to-speech: normalize, split, synth, play, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register_subcommands() -> None:
    # Each module only imports typer at the top; torch and friends load inside the commands.
    from soprano_cli.cli import normalize, play, serve, split, synth

    for module in (normalize, split, synth, play, serve):
        module.register(app)


_register_subcommands()


def _print_error(message: str) -> None:
    print(f"soprano: error: {message}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, map every expected failure to one line and an exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="soprano", standalone_mode=False)
        code = result if isinstance(result, int) else errors.EXIT_OK
    except errors.SopranoError as error:
        _print_error(error.message)
        code = error.exit_code
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        _print_error("interrupted")
        code = errors.EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): that ends the job, quietly.
        _silence_stdout()
        code = errors.EXIT_OK
    sys.exit(code)
