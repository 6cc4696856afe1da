"""README's Setup: CI runs its exact lines and installs every system part; the wheel carries man pages and completions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import system_deps
from system_deps import needs

from .conftest import REPO

CI_RUN = REPO / ".ci" / "run"
# Where the wheel's data files go, relative to the environment's prefix: the places man, bash-completion,
# zsh and fish look (pyproject.toml's [tool.setuptools.data-files]).
DATA_FILES = {
    **{f"man/{page.name}": f"share/man/man1/{page.name}" for page in (REPO / "man").glob("*.1")},
    "completions/soprano.bash": "share/bash-completion/completions/soprano.bash",
    "completions/_soprano": "share/zsh/site-functions/_soprano",
    "completions/soprano.fish": "share/fish/vendor_completions.d/soprano.fish",
}


def setup_lines() -> list[str]:
    """The command lines of the first fenced block under README's `## Setup`."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Setup\n", 1)[1]
    block = re.search(r"^```[\w-]*\n(.*?)^```", section, re.MULTILINE | re.DOTALL).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def ci_lines() -> list[str]:
    return [line.strip() for line in CI_RUN.read_text().splitlines()]


def apt_packages(command: str) -> set[str]:
    """The package names in one `apt-get install ...` command (continuation lines joined, options dropped)."""
    words = command.replace("\\\n", " ").split("apt-get install", 1)[1].split("\n", 1)[0].split()
    return {word for word in words if not word.startswith(("-", ">"))}


def readme_test_packages() -> set[str]:
    """The packages README's Setup tells a developer to install for the tests."""
    setup = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Setup\n", 1)[1].split("\n## ", 1)[0]
    command = setup.split("What the tests need", 1)[1].split("`apt-get install", 1)[1].split("`", 1)[0]
    return apt_packages("apt-get install" + command.replace("\n", " "))


def test_setup_block_is_venv_install_and_test():
    lines = setup_lines()
    assert lines[0].startswith("python3 -m venv .venv && . .venv/bin/activate")
    assert "--index-url https://download.pytorch.org/whl/cpu torch==" in lines[1]
    assert lines[-1] == "python3 -m pytest -q"


def test_ci_runs_the_readme_setup_lines_word_for_word_in_order():
    ci = ci_lines()
    positions = []
    for line in setup_lines():
        assert line in ci, f".ci/run does not run README's setup line `{line}` as it is written"
        positions.append(ci.index(line))
    assert positions == sorted(positions)


def test_ci_fails_on_skips_and_on_an_empty_test_run():
    text = CI_RUN.read_text()
    assert f"export {system_deps.REQUIRE_ALL_VARIABLE}=1" in text
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    # pytest's exit status reaches the script's own: 5 (no test) fails the run.
    tail = text.split("python3 -m pytest -q\n", 1)[1]
    assert "status=$?" in tail and tail.rstrip().endswith('exit "$status"')


@pytest.mark.parametrize("name", sorted(name for name, part in system_deps.PARTS.items()
                                        if part.install.startswith("apt-get install")))
def test_ci_and_readme_install_every_system_part(name):
    wanted = set(system_deps.PARTS[name].install.split()[2:])
    assert wanted <= apt_packages(CI_RUN.read_text()), f".ci/run lacks {wanted} for {name}"
    # libasound2 comes with libportaudio2 (and Ubuntu 24.04 names it libasound2t64).
    assert wanted - {"libasound2"} <= readme_test_packages(), f"README's test packages lack {wanted} for {name}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built with pip from a copy of the sources (the build writes build/ and *.egg-info)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                                "__pycache__", "tests", "benchmarks", ".*cache"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = (tmp / "dist").glob("soprano_cli-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_installs_man_pages_and_completions(wheel):
    names = wheel.namelist()
    data = {name.split(".data/data/", 1)[1]: name for name in names if ".data/data/" in name}
    assert set(data) == set(DATA_FILES.values())
    for source, target in DATA_FILES.items():
        assert wheel.read(data[target]) == (REPO / source).read_bytes(), target
    assert any(name.endswith("soprano_cli/server/web/index.html") for name in names)
    # the int8 kernel's source, which the installed package builds on first use
    kernel = next(name for name in names if name.endswith("soprano_cli/engine/kernels/int8_rows.cpp"))
    assert wheel.read(kernel) == (REPO / "soprano_cli/engine/kernels/int8_rows.cpp").read_bytes()


@needs("man")
def test_man_finds_pages_under_share_man_beside_a_path_entry(tmp_path):
    """What README promises after `pip install .`: man-db maps each PATH entry's ../share/man, so
    `man soprano` finds <venv>/share/man/man1/soprano.1 while <venv>/bin is on PATH (no MANPATH)."""
    prefix = tmp_path / "venv"
    (prefix / "bin").mkdir(parents=True)
    pages = prefix / "share" / "man" / "man1"
    pages.mkdir(parents=True)
    shutil.copy(REPO / "man" / "soprano-synth.1", pages)
    env = {key: value for key, value in os.environ.items() if key not in ("MANPATH", "MANOPT")}
    without = subprocess.run(["man", "-w", "soprano-synth"], env=env, capture_output=True, text=True, timeout=30)
    assert str(prefix) not in without.stdout
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env['PATH']}"
    found = subprocess.run(["man", "-w", "soprano-synth"], env=env, capture_output=True, text=True, timeout=30)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(pages / "soprano-synth.1")


def test_the_soprano_command_is_ours():
    """The reference package the tests compare against (soprano-tts) installs a `soprano` and a
    `soprano-webui` of its own: whichever pip installs last wins. Ours must, or README's commands
    run upstream's CLI."""
    from importlib.metadata import version

    bin_dir = os.path.dirname(sys.executable)
    for name in ("soprano", "soprano-webui"):
        path = os.path.join(bin_dir, name)
        path = path if os.path.exists(path) else shutil.which(name)
        if path is None:
            pytest.skip(f"no {name} script in this environment")
        done = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Usage: " in done.stdout and "--model-path MODEL_PATH" not in done.stdout, f"{path} is upstream's"
    done = subprocess.run([os.path.join(bin_dir, "soprano") if os.path.exists(os.path.join(bin_dir, "soprano"))
                           else "soprano", "--version"], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == f"soprano {version('soprano-cli')}"
