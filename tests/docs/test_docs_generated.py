"""The committed man pages and completions equal a fresh generation, cover every option, and render cleanly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer
from system_deps import needs

from soprano_cli import environment, errors
from soprano_cli.cli.app import app

from .conftest import REPO

GENERATED_DIRS = ("completions", "man")


def _commands():
    """(path words, click command) for every command, walked from the typer app independently of the generator."""
    found = []

    def walk(command, path):
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, path + (name,))

    walk(typer.main.get_command(app), ("soprano",))
    return found


def _option_names(command) -> list[str]:
    return [name for param in command.params if type(param).__name__.endswith("Option") and not param.hidden
            for name in [*param.opts, *param.secondary_opts]] + ["-h", "--help"]


def _page_for(path: tuple[str, ...]) -> str:
    return "-".join(path[:2]) + ".1"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    done = subprocess.run([sys.executable, str(REPO / "tools" / "gen_docs.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return out


def test_committed_files_are_current(regenerated):
    for folder in GENERATED_DIRS:
        fresh = sorted(p.name for p in (regenerated / folder).iterdir())
        committed = sorted(p.name for p in (REPO / folder).iterdir() if p.is_file())
        assert committed == fresh, f"{folder}/ differs in its file list; run `python3 tools/gen_docs.py`"
        for name in fresh:
            assert (REPO / folder / name).read_bytes() == (regenerated / folder / name).read_bytes(), (
                f"{folder}/{name} is stale: run `python3 tools/gen_docs.py` and commit the result")


def test_generation_is_deterministic(regenerated, tmp_path):
    subprocess.run([sys.executable, str(REPO / "tools" / "gen_docs.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=60)
    for folder in GENERATED_DIRS:
        for path in (regenerated / folder).iterdir():
            assert (tmp_path / folder / path.name).read_bytes() == path.read_bytes(), path.name


def test_one_page_per_subcommand():
    top = typer.main.get_command(app)
    expected = {"soprano.1"} | {f"soprano-{name}.1" for name in top.commands}
    assert {p.name for p in (REPO / "man").glob("*.1")} == expected


@pytest.mark.parametrize("path,command", _commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_option_in_man_page(path, command):
    page = (REPO / "man" / _page_for(path)).read_text()
    for name in _option_names(command):
        escaped = name.replace("-", "\\-")
        assert f"\\fB{escaped}\\fR" in page, f"{name} of {' '.join(path)} missing from its man page"
    for name in getattr(command, "commands", {}):
        assert name in page


@pytest.mark.parametrize("page", sorted(p.name for p in (REPO / "man").glob("*.1")))
def test_man_page_sections(page):
    text = (REPO / "man" / page).read_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "EXIT STATUS", "SEE ALSO"):
        assert f".SH {section}\n" in text or f'.SH "{section}"' in text, f"{page} lacks {section}"
    status = text.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    for name in dir(errors):
        if name.startswith("EXIT_"):
            assert f"\\fB{getattr(errors, name)}\\fR" in status, f"{page}: exit code {name} undocumented"


@pytest.mark.parametrize("path,command", _commands(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_env_vars_of_options_in_man_page(path, command):
    page = (REPO / "man" / _page_for(path)).read_text()
    for param in command.params:
        if isinstance(param.envvar, str):
            section = page.split(".SH ENVIRONMENT", 1)[1].split(".SH ", 1)[0]
            assert f"\\fB{param.envvar}\\fR" in section, f"{param.envvar} missing from {_page_for(path)} ENVIRONMENT"


def test_environment_section_lists_the_table():
    page = (REPO / "man" / "soprano.1").read_text()
    for var in environment.ENVIRONMENT:
        assert f"\\fB{var.name}\\fR" in page


@needs("man")
@pytest.mark.parametrize("page", sorted(p.name for p in (REPO / "man").glob("*.1")))
def test_man_renders_without_warnings(page):
    env = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8"}
    done = subprocess.run(["man", "--warnings", "-l", str(REPO / "man" / page)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=30)
    assert done.returncode == 0
    assert done.stderr == "", done.stderr
