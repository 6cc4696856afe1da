"""The `soprano` command: builds the typer app and turns library errors into exit codes."""

from __future__ import annotations

import os
import sys

import typer

from soprano_cli import errors

# Newer typer vendors click, older typer re-exports it: find the base class from typer itself.
ClickException = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")

app = typer.Typer(
    name="soprano",
    help="Fast on-device Soprano text-to-speech: normalize, split, synth, play, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# Modules under soprano_cli/cli/ that each add one subcommand, in help order.
SUBCOMMANDS = ("normalize", "split", "synth", "play", "serve", "models", "doctor")


def _register_subcommands() -> None:
    # Each module only imports typer at the top; torch and friends load inside the commands.
    import importlib

    for name in SUBCOMMANDS:
        importlib.import_module(f"soprano_cli.cli.{name}").register(app)


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
    if os.environ.get("_SOPRANO_COMPLETE"):
        # Shell completion is click's own protocol: let its standalone main answer and exit.
        command.main(args=argv, prog_name="soprano")
    args = sys.argv[1:] if argv is None else argv
    try:
        # make_context + invoke rather than main(): main() turns a closed pipe into exit 1 itself.
        with command.make_context("soprano", list(args)) as context:
            result = command.invoke(context)
        code = result if isinstance(result, int) else errors.EXIT_OK
    except errors.SopranoError as error:
        _print_error(error.message)
        code = error.exit_code
    except typer.Exit as done:
        code = done.exit_code
    except ClickException as error:
        error.show()
        code = error.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _print_error("interrupted")
        code = errors.EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): that ends the job, quietly.
        _silence_stdout()
        code = errors.EXIT_OK
    try:
        sys.stdout.flush()
    except OSError:
        # stdout failed (a full disk behind `>`): the error is reported already; without this
        # the interpreter's final flush would add a traceback of its own.
        _silence_stdout()
    _exit(code)


def _exit(code: int) -> None:
    """sys.exit, unless a thread is still blocked reading stdin: then os._exit.

    A run that ends early (a closed pipe, a full disk) while stdin stays open leaves the input
    thread waiting in stdin's readline, holding its lock; the interpreter's shutdown then aborts
    on that lock ("Fatal Python error: _enter_buffered_busy", exit 134) instead of exiting.
    """
    import threading

    if any(thread.name == "soprano-input" and thread.is_alive() for thread in threading.enumerate()):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)
