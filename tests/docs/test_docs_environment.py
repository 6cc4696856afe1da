"""The environment table covers every variable the code reads, and the options that read them agree with it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer

from soprano_cli import environment, errors
from soprano_cli.cli.app import app

from .conftest import REPO

# A SOPRANO_* name in quotes or after `$` is a variable (this skips click's internal _SOPRANO_COMPLETE);
# names assigned as Python constants (SOPRANO_RATE, quoted in an __all__) are not.
_VARIABLE = re.compile(r"""(?:["'$])(SOPRANO_[A-Z][A-Z0-9_]*)""")
_CONSTANT = re.compile(r"^\s*(SOPRANO_[A-Z0-9_]+)\s*[:=]", re.MULTILINE)

# Commands whose options read the model-loading variables.
MODEL_COMMANDS = ("synth", "serve")
MODEL_OPTIONS = {"--model": "SOPRANO_MODEL", "--device": "SOPRANO_DEVICE", "--backend": "SOPRANO_BACKEND",
                 "--dtype": "SOPRANO_DTYPE", "--max-batch": "SOPRANO_MAX_BATCH"}
# Where an option does not read its variable yet; the test fails when one is fixed, so the table
# (and this set) are updated with it.
KNOWN_GAPS: set = set()  # options that should read a SOPRANO_ variable but do not (none left)


def _source_variables() -> set[str]:
    found, constants = set(), set()
    for path in (REPO / "soprano_cli").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found |= set(_VARIABLE.findall(text))
        constants |= set(_CONSTANT.findall(text))
    return found - constants


def _top_commands():
    return typer.main.get_command(app).commands


def _leaf_params():
    """(subcommand name, param) for every parameter of every command, nested ones under their top name."""
    found = []

    def walk(command, top):
        for param in command.params:
            found.append((top, param))
        for sub in getattr(command, "commands", {}).values():
            walk(sub, top)

    for name, command in _top_commands().items():
        walk(command, name)
    return found


def test_table_covers_every_variable_in_the_source():
    documented = {var.name for var in environment.ENVIRONMENT}
    missing = _source_variables() - documented
    assert not missing, f"undocumented in soprano_cli/environment.py: {sorted(missing)}"
    for name in ("SOPRANO_MODEL", "SOPRANO_DEVICE", "SOPRANO_BACKEND", "SOPRANO_DTYPE", "SOPRANO_MAX_BATCH",
                 "SOPRANO_SERVER", "SOPRANO_API_KEY", "HF_HOME", "HF_HUB_OFFLINE", "XDG_RUNTIME_DIR"):
        assert name in documented


def test_table_has_no_stale_soprano_variables():
    assert {v.name for v in environment.ENVIRONMENT if v.name.startswith("SOPRANO_")} <= _source_variables()


def test_every_option_envvar_is_documented_for_its_command():
    table = {var.name: var for var in environment.ENVIRONMENT}
    for command, param in _leaf_params():
        if isinstance(param.envvar, str):
            assert param.envvar in table, f"{command} {param.opts}: {param.envvar} not in the table"
            var = table[param.envvar]
            assert command in var.commands, f"table entry {var.name} does not list `{command}`"
            assert var.option in param.opts, f"{var.name} is documented as {var.option}, read by {param.opts}"


def test_table_commands_read_their_variable():
    params = _leaf_params()
    for var in environment.ENVIRONMENT:
        if var.option is None:
            continue
        for command in var.commands:
            if command not in _top_commands():
                continue
            options = [p for c, p in params if c == command and var.option in getattr(p, "opts", [])]
            if options:  # commands like doctor read the variable without an option
                assert any(p.envvar == var.name for p in options), f"`{command} {var.option}` ignores {var.name}"


def test_model_options_read_the_same_variables_everywhere():
    gaps = set()
    params = _leaf_params()
    for command in MODEL_COMMANDS:
        for option, variable in MODEL_OPTIONS.items():
            [param] = [p for c, p in params if c == command and option in p.opts]
            if param.envvar != variable:
                gaps.add((command, option))
    assert gaps == KNOWN_GAPS, "update KNOWN_GAPS and soprano_cli/environment.py to match"


def test_exit_codes_table_matches_errors():
    constants = {name: getattr(errors, name) for name in dir(errors) if name.startswith("EXIT_")}
    assert {item.name: item.code for item in environment.EXIT_CODES} == constants
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.SopranoError):
            assert cls.exit_code in constants.values()


def test_renderers():
    text = environment.render_environment()
    assert all(var.name in text for var in environment.ENVIRONMENT)
    assert "SOPRANO_TRACE_PLAYBACK" in environment.render_environment("play")
    assert "SOPRANO_MODEL" not in environment.render_environment("normalize")
    codes = environment.render_exit_codes()
    assert all(f"{item.code:>4}" in codes for item in environment.EXIT_CODES)


@pytest.mark.parametrize("module", ["soprano_cli.environment", "soprano_cli.cli.choices", "soprano_cli.cli.app",
                                    "soprano_cli.models", "soprano_cli.doctor"])
def test_import_does_not_load_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "False", done.stderr
