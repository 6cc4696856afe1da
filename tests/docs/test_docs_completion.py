"""The generated completions complete subcommands, every option, enum values and paths; typer's own works too."""

from __future__ import annotations

import os
import subprocess

import pytest
import typer
from system_deps import needs

from soprano_cli.cli.app import app
from soprano_cli.engine.devices import BACKENDS, DEVICES, DTYPES

from .conftest import REPO, run_soprano

BASH = REPO / "completions" / "soprano.bash"
ZSH = REPO / "completions" / "soprano.zsh"
FISH = REPO / "completions" / "soprano.fish"


def bash_complete(words: list[str], cwd=None) -> list[str]:
    """COMPREPLY of the static bash completion for the command line `words` (the last one being completed)."""
    script = (f"source {BASH}; COMP_WORDS=({' '.join(_bash_word(w) for w in words)}); "
              f"COMP_CWORD={len(words) - 1}; _soprano; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    return [line for line in done.stdout.splitlines() if line]


def _bash_word(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def _all_commands():
    found = []

    def walk(command, path):
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, path + [name])

    walk(typer.main.get_command(app), ["soprano"])
    return found


@pytest.mark.parametrize("words,expected", [
    (["soprano", ""], ["normalize", "split", "synth", "play", "serve", "doctor", "models"]),
    (["soprano", "sy"], ["synth"]),
    (["soprano", "models", ""], ["download", "list", "rm"]),
    (["soprano", "models", "r"], ["rm"]),
    (["soprano", "synth", "--device", ""], list(DEVICES)),
    (["soprano", "synth", "-d", "c"], ["cpu", "cuda"]),
    (["soprano", "synth", "--device", "=", "cu"], ["cuda"]),  # --device=cu as bash splits it
    (["soprano", "serve", "--backend", ""], list(BACKENDS)),
    (["soprano", "synth", "--dtype", ""], list(DTYPES)),
    (["soprano", "synth", "--format", "o"], ["ogg", "opus"]),
    (["soprano", "synth", "--sample-format", ""], ["s16", "f32"]),
    (["soprano", "play", "--sample-format", ""], ["s16", "f32"]),
    (["soprano", "play", "--device", ""], []),  # a sound device, not a compute device
    (["soprano", "synth", "--seed", ""], []),
    (["soprano", "synth", "--dev"], ["--device"]),
    (["soprano", "synth", "--verbose", "--no-"], ["--no-normalize", "--no-server"]),
])
def test_bash_completes(words, expected):
    assert sorted(bash_complete(words)) == sorted(expected)


@pytest.mark.parametrize("path,command", _all_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bash_offers_every_option(path, command):
    options = {name for param in command.params if type(param).__name__.endswith("Option") and not param.hidden
               for name in [*param.opts, *param.secondary_opts]} | {"-h", "--help"}
    assert set(bash_complete([*path, "-"])) == options


def test_bash_completes_paths(tmp_path):
    (tmp_path / "out.wav").touch()
    (tmp_path / "outdir").mkdir()
    assert sorted(bash_complete(["soprano", "synth", "-o", "ou"], cwd=tmp_path)) == ["out.wav", "outdir"]
    assert bash_complete(["soprano", "synth", "--output-dir", "ou"], cwd=tmp_path) == ["outdir"]
    assert bash_complete(["soprano", "synth", "--model", "ou"], cwd=tmp_path) == ["outdir"]
    assert sorted(bash_complete(["soprano", "normalize", "ou"], cwd=tmp_path)) == ["out.wav", "outdir"]
    assert sorted(bash_complete(["soprano", "play", "o"], cwd=tmp_path)) == ["out.wav", "outdir"]


@needs("zsh")
def test_zsh_script_parses_and_registers(tmp_path):
    (tmp_path / "_soprano").write_bytes(ZSH.read_bytes())
    script = (f"fpath=({tmp_path} $fpath); autoload -U compinit; compinit -u -d {tmp_path}/dump; "
              f"print -r -- $_comps[soprano]; source {ZSH}; print -r -- $_comps[soprano]")
    assert subprocess.run(["zsh", "-n", str(ZSH)], capture_output=True, timeout=30).returncode == 0
    done = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["_soprano", "_soprano"]


@needs("fish")
@pytest.mark.parametrize("line,expected", [
    ("soprano sy", {"synth"}),
    ("soprano models ", {"download", "list", "rm"}),
    ("soprano synth --device ", set(DEVICES)),
    ("soprano serve --dtype ", set(DTYPES)),
    ("soprano models rm --", {"--yes", "--help"}),
])
def test_fish_completes(line, expected, tmp_path):
    done = subprocess.run(["fish", "--no-config", "-c", f"source {FISH}; complete -C '{line}'"],
                          capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert {row.split("\t")[0] for row in done.stdout.splitlines()} == expected


def test_typer_install_completion(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"SHELL": "/bin/bash", "HOME": str(home)}
    shown = run_soprano(["--show-completion"], env=env)
    assert shown.returncode == 0, shown.stderr
    assert b"complete" in shown.stdout and b"soprano" in shown.stdout
    installed = run_soprano(["--install-completion"], env=env)
    assert installed.returncode == 0, installed.stderr
    assert "soprano" in (home / ".bashrc").read_text()


def test_typer_dynamic_completion():
    done = run_soprano([], env={"_SOPRANO_COMPLETE": "complete_bash", "COMP_WORDS": "soprano sy", "COMP_CWORD": "1"})
    assert done.returncode == 0
    assert done.stdout.split() == [b"synth"]
