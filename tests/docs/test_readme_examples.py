"""Every runnable shell example in README.md exits 0.

Convention: a block fenced as ```sh is run; any other fence (```console, ```bash-norun, ```bash,
```text ...) is not, so examples that need the network, a sound card or a GPU use one of those.
Each block runs in its own temp dir, command by command (a `\\` continuation or a heredoc is one
command), with `soprano` on PATH, the tiny checkpoint as SOPRANO_MODEL, no daemon and no network.
Lines starting with `#` are comments; a leading `$ ` prompt is dropped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from .conftest import REPO

README = REPO / "README.md"
RUN_FENCE = "sh"
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")


def runnable_blocks(text: str) -> list[str]:
    """The bodies of the ```sh blocks, in order."""
    return [body for lang, body in _FENCE.findall(text) if lang == RUN_FENCE]


def commands(block: str) -> list[str]:
    """Split a block into commands: continuation lines and heredoc bodies stay with their command."""
    found: list[str] = []
    lines = iter(block.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        line = line[2:] if line.startswith("$ ") else line
        command = [line]
        while command[-1].endswith("\\"):
            command.append(next(lines, ""))
        heredoc = _HEREDOC.search(" ".join(command))
        if heredoc:
            for body in lines:
                command.append(body)
                if body.strip() == heredoc.group(1):
                    break
        found.append("\n".join(command))
    return found


def _blocks() -> list[str]:
    return runnable_blocks(README.read_text(encoding="utf-8")) if README.exists() else []


def test_command_splitting():
    block = "# comment\n$ echo hi\nsoprano synth \\\n  --help\ncat <<EOF > a.txt\nx\nEOF\nls\n"
    assert commands(block) == ["echo hi", "soprano synth \\\n  --help", "cat <<EOF > a.txt\nx\nEOF", "ls"]
    text = "```sh\nls\n```\n```console\nrm -rf /\n```\n```bash-norun\nsoprano play\n```\n"
    assert runnable_blocks(text) == ["ls\n"]


@pytest.fixture
def example_env(tmp_path, tiny_checkpoint) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "soprano"
    # The same interpreter as the tests, whether or not the console script is on PATH.
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m soprano_cli "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "SOPRANO_MODEL": str(tiny_checkpoint), "SOPRANO_SERVER": "none", "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("index", range(len(_blocks())) or [pytest.param(0, marks=pytest.mark.skip(
    reason="README.md has no ```sh blocks yet"))])
def test_readme_block(index, example_env, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for command in commands(_blocks()[index]):
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=work, env=example_env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        assert done.returncode == 0, (
            f"README ```sh block {index + 1}: `{command}` exited {done.returncode}\n"
            f"{done.stderr.decode(errors='replace')[-2000:]}")
