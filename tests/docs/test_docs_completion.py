"""The generated completions complete subcommands, every option, enum values and paths; typer's own works too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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
    (["soprano", "synth", "--verbose", "--no-"], ["--no-emails", "--no-markdown", "--no-normalize", "--no-phone-numbers",
                                                "--no-resume", "--no-server", "--no-urls"]),
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


INSTALLED = {
    "bash": (".local/share/bash-completion/completions/soprano", BASH),
    "zsh": (".zfunc/_soprano", REPO / "completions" / "_soprano"),
    "fish": (".config/fish/completions/soprano.fish", FISH),
}


@pytest.mark.parametrize("shell", sorted(INSTALLED))
def test_install_completion_copies_the_static_script(shell):
    # Broke: typer's own installer appended a line to ~/.bashrc (or ~/.zshrc, adding compinit and a
    # zstyle) that starts Python on every Tab, with no completion of option values.
    home = Path(os.environ["HOME"])  # the autouse fixture's private HOME
    done = run_soprano(["--install-completion"], env={"SHELL": f"/usr/bin/{shell}"})
    assert done.returncode == 0, done.stderr
    relative, shipped = INSTALLED[shell]
    assert (home / relative).read_bytes() == shipped.read_bytes()
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()) == [relative]
    assert relative in done.stderr.decode() and done.stdout == b""
    if shell == "zsh":
        assert "fpath=(~/.zfunc $fpath)" in done.stderr.decode()  # the note, instead of editing ~/.zshrc


def test_installed_bash_script_completes_values_without_python(tmp_path):
    run_soprano(["--install-completion"], env={"SHELL": "/bin/bash"})
    installed = Path(os.environ["HOME"]) / INSTALLED["bash"][0]
    script = installed.read_text()
    assert "python" not in script and "_SOPRANO_COMPLETE" not in script
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                           f"source {installed}; COMP_WORDS=(soprano synth --dtype ''); COMP_CWORD=3; _soprano; "
                           "printf '%s\\n' \"${COMPREPLY[@]}\""], capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == list(DTYPES)


BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


@needs("bash-completion")
def test_bash_completion_package_loads_the_installed_script():
    # What a new interactive shell does on the first Tab after `soprano`: bash-completion's loader
    # finds the command's script in the user folder by name.
    assert run_soprano(["--install-completion"], env={"SHELL": "/bin/bash"}).returncode == 0
    script = (f"source {BASH_COMPLETION}; __load_completion soprano && complete -p soprano; "
              "COMP_WORDS=(soprano synth --format o); COMP_CWORD=3; _soprano; echo \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                          timeout=30)
    assert done.stdout.splitlines() == ["complete -F _soprano soprano", "ogg opus"], done.stderr


def test_install_completion_honours_xdg_folders(tmp_path):
    env = {"SHELL": "/bin/fish", "XDG_CONFIG_HOME": str(tmp_path / "config")}
    assert run_soprano(["--install-completion"], env=env).returncode == 0
    assert (tmp_path / "config" / "fish" / "completions" / "soprano.fish").read_bytes() == FISH.read_bytes()
    env = {"SHELL": "/bin/bash", "XDG_DATA_HOME": str(tmp_path / "data")}
    assert run_soprano(["--install-completion"], env=env).returncode == 0
    assert (tmp_path / "data" / "bash-completion" / "completions" / "soprano").is_file()


def test_install_completion_unknown_shell():
    done = run_soprano(["--install-completion"], env={"SHELL": "/bin/tcsh"})
    assert done.returncode == 2
    assert done.stderr.decode().startswith("soprano: error: cannot tell which completion to use from SHELL=/bin/tcsh")


def test_show_completion_prints_the_static_script():
    done = run_soprano(["--show-completion"], env={"SHELL": "/bin/zsh"})
    assert done.returncode == 0
    assert done.stdout == (REPO / "completions" / "_soprano").read_bytes()


def test_typer_dynamic_completion():
    done = run_soprano([], env={"_SOPRANO_COMPLETE": "complete_bash", "COMP_WORDS": "soprano sy", "COMP_CWORD": "1"})
    assert done.returncode == 0
    assert done.stdout.split() == [b"synth"]
