"""The entry points a newcomer tries first: `soprano --version`, upstream's `soprano "TEXT"`, `soprano-webui --help`."""

from __future__ import annotations

import subprocess
import sys

import pytest

import soprano_cli
from soprano_cli.errors import EXIT_USAGE

from .conftest import run_soprano


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    # Broke: there was no version option at all ("No such option").
    done = run_soprano([flag])
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == f"soprano {soprano_cli.__version__}\n" and done.stderr == b""


@pytest.mark.parametrize("args,pointer", [
    (["Hello world"], "soprano synth 'Hello world'"),
    (["Hello world", "-o", "hi.wav"], "soprano synth 'Hello world' -o hi.wav"),
    (["hello"], "soprano synth hello"),
])
def test_upstream_text_form_points_at_synth(args, pointer):
    # Broke: upstream's `soprano "TEXT"` answered click's "No such command 'Hello world'." in a usage block.
    done = run_soprano(args)
    assert done.returncode == EXIT_USAGE
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soprano: error:") and lines[0].endswith(pointer), lines
    assert done.stdout == b""


def test_misspelt_command_is_named():
    done = run_soprano(["synht"])
    assert done.returncode == EXIT_USAGE
    assert done.stderr.decode() == "soprano: error: no such command 'synht'; did you mean 'synth'?\n"


def _webui(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from soprano_cli.cli.serve import webui_main; sys.argv[0] = 'soprano-webui'; webui_main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def test_webui_help_is_its_own():
    # Broke: it showed `soprano serve`'s usage with port 8000 and rejected upstream's options.
    done = _webui("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: soprano-webui [OPTIONS]")
    assert "soprano serve" not in done.stdout.split("\n\n", 1)[0]
    assert "[default: 7860;" in done.stdout and "-h, --help" in done.stdout
    for option in ("--cache-size", "-bs, --decoder-batch-size", "--model", "--device"):
        assert option in done.stdout


def test_webui_accepts_upstream_options(tmp_path):
    # Options parse (then the missing model fails cleanly, before any port is opened).
    done = _webui("--cache-size", "100", "-bs", "4", "--model", str(tmp_path / "missing"), "--no-socket")
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("soprano: error:") and "No such option" not in done.stderr
