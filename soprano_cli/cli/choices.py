"""What each option's value can be, in one place: enum values, file paths or folders.

The shell completions and man pages (tools/gen_docs.py) read this; options may use it for
validation later. Value lists stay defined where the code uses them, and are looked up lazily,
never at import time.
"""

from __future__ import annotations

import importlib

# Option name -> "module:CONSTANT" holding the values it accepts.
OPTION_VALUES = {
    "--device": "soprano_cli.engine.config:DEVICES",
    "--backend": "soprano_cli.engine.config:BACKENDS",
    "--dtype": "soprano_cli.engine.config:DTYPES",
    "--format": "soprano_cli.audio.formats:SUPPORTED_FORMATS",
    "--sample-format": "soprano_cli.audio.formats:SAMPLE_FORMATS",
}

# (command, option) pairs that share a name above but take something else.
NOT_ENUM = {
    ("play", "--device"),  # a sound device: an index or part of its name
}

# Options whose value is a folder (complete directories only); `--model` also takes a hub id.
DIRECTORY_OPTIONS = {"--input-dir", "--output-dir", "--model"}

# Parameters typed `str` that nevertheless name a file: (command, parameter name).
FILE_PARAMETERS = {("play", "file")}


def values(command: str, option: str) -> tuple[str, ...] | None:
    """The values `option` of subcommand `command` accepts, or None when it is free-form."""
    if (command, option) in NOT_ENUM or option not in OPTION_VALUES:
        return None
    module, _, name = OPTION_VALUES[option].partition(":")
    return tuple(getattr(importlib.import_module(module), name))


def value_kind(command: str, param_name: str, option_names: list[str], is_path: bool) -> str:
    """How a shell completes this parameter's value: 'choice', 'dir', 'file' or 'none'."""
    if any(values(command, name) is not None for name in option_names):
        return "choice"
    if any(name in DIRECTORY_OPTIONS for name in option_names):
        return "dir"
    if is_path or (command, param_name) in FILE_PARAMETERS:
        return "file"
    return "none"
