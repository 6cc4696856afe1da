"""The `soprano` command: builds the typer app and turns library errors into exit codes."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from soprano_cli import errors

# Newer typer vendors click, older typer re-exports it: find the base class from typer itself.
ClickException = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


class SopranoGroup(TyperGroup):
    """The root command group: a first word that is no subcommand gets a pointer, not click's error."""

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if (args and not ctx.resilient_parsing and not name.startswith("-")
                and self.get_command(ctx, name) is None):
            import difflib
            import shlex

            near = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.75)
            if near and len(args) == 1 and " " not in name:
                raise errors.InvalidParameterError(f"no such command '{name}'; did you mean '{near[0]}'?")
            # Upstream's `soprano "TEXT"` form: say which command speaks it.
            raise errors.InvalidParameterError(
                f"'{name}' is not a command; to speak text, use: soprano synth {shlex.join(args)}")
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="soprano",
    cls=SopranoGroup,
    help="Fast on-device Soprano text-to-speech: normalize, split, synth, play, serve.",
    no_args_is_help=True,
    add_completion=False,  # ours installs the static scripts in completions/ (see cli/completion.py)
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


def _show_version(value: bool) -> None:
    if value:
        from soprano_cli import __version__

        print(f"soprano {__version__}")
        raise typer.Exit(errors.EXIT_OK)


def _install_completion(value: bool) -> None:
    if value:
        from soprano_cli.cli import completion

        target, note = completion.install(completion.detect_shell())
        print(f"soprano: installed {target}; {note}", file=sys.stderr)
        raise typer.Exit(errors.EXIT_OK)


def _show_completion(value: bool) -> None:
    if value:
        from soprano_cli.cli import completion

        sys.stdout.write(completion.shipped_script(completion.detect_shell()).read_text(encoding="utf-8"))
        raise typer.Exit(errors.EXIT_OK)


@app.callback()
def root_options(
    version: Annotated[bool, typer.Option("--version", "-V", is_eager=True, callback=_show_version,
                                          help="Print the version and exit.")] = False,
    install_completion: Annotated[bool, typer.Option(
        "--install-completion", is_eager=True, callback=_install_completion,
        help="Install the completion script for your shell ($SHELL: bash, zsh or fish) in your user "
             "completion folder; edits no startup file.")] = False,
    show_completion: Annotated[bool, typer.Option(
        "--show-completion", is_eager=True, callback=_show_completion,
        help="Print the completion script for your shell, to install it elsewhere.")] = False,
) -> None:
    """Fast on-device Soprano text-to-speech: normalize, split, synth, play, serve."""


def _print_error(message: str) -> None:
    print(f"soprano: error: {message}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def main(argv: list[str] | None = None, *, command=None, prog_name: str = "soprano") -> None:
    """Console entry point: run the app (or `command`), map every expected failure to one line and an exit code."""
    command = command or typer.main.get_command(app)
    if os.environ.get("_SOPRANO_COMPLETE"):
        # Click's dynamic completion protocol, for rc files written by earlier versions (typer's
        # installer); --install-completion now installs the static scripts instead.
        try:
            from typer._completion_classes import completion_init

            completion_init()  # registers typer's shell classes, which add_completion=False skips
        except ImportError:
            pass
        command.main(args=argv, prog_name=prog_name)
    args = sys.argv[1:] if argv is None else argv
    from soprano_cli.interrupts import Terminated, handle_sigterm

    handle_sigterm()  # SIGTERM saves files as Ctrl-C does, instead of killing the process mid-write
    try:
        # make_context + invoke rather than main(): main() turns a closed pipe into exit 1 itself.
        with command.make_context(prog_name, list(args)) as context:
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
    except Terminated:
        _print_error("terminated")
        code = errors.EXIT_TERMINATED
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
