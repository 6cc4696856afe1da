"""The committed man pages and completions equal a fresh generation, cover every option, and render cleanly."""

from __future__ import annotations

import os
import re
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


# -- lint, dates, examples, the HTTP API and environment (issue #15) -----------------------------

PAGES = sorted(p.name for p in (REPO / "man").glob("*.1"))


def _plain(roff_line: str) -> str:
    """A roff text line as a reader sees it (the escapes gen_docs writes)."""
    return re.sub(r"\\f[BIR]", "", roff_line).replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")


def _example_commands(page: str) -> list[str]:
    """The command lines of a page's EXAMPLES, continuation lines joined as the shell joins them."""
    section = (REPO / "man" / page).read_text().split(".SH EXAMPLES\n", 1)[1].split("\n.SH ", 1)[0]
    blocks = re.findall(r"^\.nf\n(.*?)\n\.fi$", section, flags=re.MULTILINE | re.DOTALL)
    return [_plain(block).replace("\\\n", " ") for block in blocks]


@pytest.mark.parametrize("page", PAGES)
def test_title_line_has_a_date(page):
    # Broke: .TH had an empty date, which mandoc reports and man shows as a blank footer.
    first = next(line for line in (REPO / "man" / page).read_text().splitlines() if line.startswith(".TH "))
    assert re.match(r'\.TH \S+ 1 "?\d{4}-\d{2}-\d{2}"? "soprano-cli ', first), first


@needs("mandoc")
@pytest.mark.parametrize("page", PAGES)
def test_mandoc_lint_is_clean(page):
    # Broke: every page had warnings (missing date, .PP after .SH) and style notes (lines over 80 bytes).
    done = subprocess.run(["mandoc", "-Tlint", "-W", "style", str(REPO / "man" / page)], capture_output=True,
                          text=True, timeout=30)
    assert (done.stdout + done.stderr) == "" and done.returncode == 0, done.stdout + done.stderr


def test_examples_survive_the_shell():
    # Broke: `echo "It costs $3.50."` in soprano(1) printed "It costs .50." ($3 is a shell parameter).
    literal = re.compile(r"\$\d[\d.,]*")
    checked = 0
    for page in PAGES:
        for command in _example_commands(page):
            amounts = literal.findall(command)
            if not amounts:
                continue
            first_stage = command.split(" | ", 1)[0]
            assert first_stage.startswith("echo "), command
            done = subprocess.run(["bash", "--norc", "--noprofile", "-c", first_stage], capture_output=True,
                                  text=True, timeout=30)
            for amount in amounts:
                assert amount in done.stdout, f"{page}: {command!r} prints {done.stdout!r}"
            checked += 1
    assert checked >= 2


def test_serve_page_documents_the_http_api():
    from soprano_cli.server.app import ROUTES
    from soprano_cli.server.protocol import SpeechRequest

    page = (REPO / "man" / "soprano-serve.1").read_text()
    section = _plain(page.split(".SH HTTP API\n", 1)[1].split("\n.SH ", 1)[0])
    for route in ROUTES:
        assert re.search(rf"^(GET|POST) {re.escape(route)}$", section, flags=re.MULTILINE), route
    fields = section.split("Request fields of POST /v1/audio/speech", 1)[1]
    for name in SpeechRequest.model_fields:
        assert f"\n{name}\n" in fields, f"request field {name} undocumented"
    for word in ("text/event-stream", "speech.audio.delta", "speech.audio.done", "BASE64", "Authorization: Bearer",
                 "429", "X-Sample-Rate"):
        assert word in " ".join(section.split()), word


@pytest.mark.parametrize("page,command", [(f"soprano-{c}.1", c) for c in
                                          ("normalize", "split", "synth", "play", "serve", "models", "doctor")]
                         + [("soprano.1", None)])
def test_environment_section_where_variables_apply(page, command):
    text = (REPO / "man" / page).read_text()
    expected = [var.name for var in environment.variables_for(command)]
    if command == "serve":  # the page documents `uvicorn soprano_cli.server:app` too
        expected += [var.name for var in environment.variables_for("asgi")]
    if not expected:
        assert ".SH ENVIRONMENT" not in text
        return
    section = text.split(".SH ENVIRONMENT\n", 1)[1].split("\n.SH ", 1)[0]
    for name in expected:
        assert f"\\fB{name}\\fR" in section, f"{name} missing from {page}"


def test_pages_name_the_variables_their_commands_read():
    serve = (REPO / "man" / "soprano-serve.1").read_text()
    for name in ("SOPRANO_MAX_QUEUE", "SOPRANO_MAX_INPUT_CHARS", "SOPRANO_CORS_ORIGINS"):
        assert f"\\fB{name}\\fR" in serve  # read by the same app under uvicorn
    doctor = (REPO / "man" / "soprano-doctor.1").read_text()
    for name in ("SOPRANO_TORCHSCRIPT", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        assert f"\\fB{name}\\fR" in doctor
    root = (REPO / "man" / "soprano.1").read_text()
    for name in ("SHELL", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        assert f"\\fB{name}\\fR" in root  # where --install-completion puts the scripts
