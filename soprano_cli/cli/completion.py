"""`soprano --install-completion` / `--show-completion`: the shipped static completion scripts.

The scripts in completions/ are generated from the CLI (tools/gen_docs.py) and complete option
values without starting Python on each Tab. Installing copies the one for the user's shell into
the folder that shell already searches; no shell startup file is edited.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from soprano_cli.errors import InvalidParameterError, OutputError


@dataclass(frozen=True)
class ShellCompletion:
    """Where one shell's script ships and where a user's copy goes."""

    shell: str
    source: str  # file name in completions/
    installed: tuple[str, ...]  # the same file under the prefix's share/ (a wheel's data-files)


SHELLS = {
    "bash": ShellCompletion("bash", "soprano.bash", ("bash-completion", "completions", "soprano.bash")),
    "zsh": ShellCompletion("zsh", "_soprano", ("zsh", "site-functions", "_soprano")),
    "fish": ShellCompletion("fish", "soprano.fish", ("fish", "vendor_completions.d", "soprano.fish")),
}


def detect_shell(environ=os.environ) -> str:
    """The user's shell from $SHELL (bash, zsh or fish)."""
    name = Path(environ.get("SHELL", "")).name
    if name not in SHELLS:
        shown = environ.get("SHELL") or "unset"
        raise InvalidParameterError(f"cannot tell which completion to use from SHELL={shown}; "
                                    f"run it with SHELL set to one of {', '.join(SHELLS)}", param="shell")
    return name


def shipped_script(shell: str) -> Path:
    """The completion file shipped with this install: the checkout's completions/, else share/ under the prefix."""
    spec = SHELLS[shell]
    checkout = Path(__file__).resolve().parents[2] / "completions" / spec.source
    candidates = [checkout]
    for scheme in sorted({sysconfig.get_default_scheme(), "posix_user", "posix_prefix"}):
        try:
            data = sysconfig.get_path("data", scheme)
        except KeyError:
            continue
        candidates.append(Path(data, "share", *spec.installed))
    candidates.append(Path(sys.prefix, "share", *spec.installed))
    for path in candidates:
        if path.is_file():
            return path
    raise OutputError(f"no {shell} completion script in this install (looked in {candidates[0].parent})")


def user_destination(shell: str, environ=os.environ) -> Path:
    """The per-user folder each shell searches by default, per its own conventions."""
    home = Path(environ.get("HOME") or Path.home())
    data = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    if shell == "bash":
        # bash-completion loads completions/<command> from here on the first Tab after `soprano`.
        base = environ.get("BASH_COMPLETION_USER_DIR")
        return (Path(base) if base else data / "bash-completion") / "completions" / "soprano"
    if shell == "zsh":
        return home / ".zfunc" / "_soprano"
    return config / "fish" / "completions" / "soprano.fish"


def install(shell: str, environ=os.environ) -> tuple[Path, str]:
    """Copy the shell's script into the user's completion folder; return the path and a note for the user."""
    source = shipped_script(shell)
    target = user_destination(shell, environ)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from None
    if shell == "bash":
        note = "new bash shells complete soprano (bash-completion loads it on the first Tab)"
    elif shell == "zsh":
        note = ("zsh loads it from a folder on $fpath: if ~/.zfunc is not on yours, add "
                "`fpath=(~/.zfunc $fpath)` before `compinit` in ~/.zshrc, then start a new shell")
    else:
        note = "new fish shells complete soprano"
    return target, note
