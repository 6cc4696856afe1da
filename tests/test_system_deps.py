"""tests/system_deps.py: a missing system part skips with its reason, and fails under SOPRANO_TEST_REQUIRE_ALL=1."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import system_deps
from system_deps import Part, have, missing, needs, require

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def fake_parts(monkeypatch):
    monkeypatch.setitem(system_deps.PARTS, "absent", Part(programs=("no-such-soprano-tool",), libraries=("nosuchsoprano",),
                                                          install="apt-get install absent"))
    monkeypatch.setitem(system_deps.PARTS, "present", Part(programs=(os.path.basename(sys.executable),)))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))


def test_missing_names_what_is_absent_and_how_to_install_it(fake_parts):
    assert missing("present") is None
    assert missing("present", "absent") == ("needs absent: no-such-soprano-tool (not on PATH), libnosuchsoprano "
                                           "(no shared library); apt-get install absent")


def test_absent_part_skips_by_default(fake_parts, monkeypatch):
    monkeypatch.setattr(system_deps, "REQUIRE_ALL", False)
    require("present")
    with pytest.raises(pytest.skip.Exception, match="needs absent"):
        require("present", "absent")
    with pytest.warns(UserWarning, match="part of this test did not run: needs absent"):
        assert have("absent") is False
    assert have("present") is True


def test_absent_part_fails_when_all_are_required(fake_parts, monkeypatch):
    monkeypatch.setattr(system_deps, "REQUIRE_ALL", True)
    require("present")
    with pytest.raises(pytest.fail.Exception, match="needs absent.*SOPRANO_TEST_REQUIRE_ALL=1"):
        require("absent")
    with pytest.raises(pytest.fail.Exception, match="needs absent"):
        have("absent")


def test_unknown_part_is_a_collection_error():
    with pytest.raises(KeyError, match="ffmpg"):
        needs("ffmpg")


def test_every_part_says_how_to_install_it():
    assert all(part.install for part in system_deps.PARTS.values())


_PROBE = '''
from system_deps import have, needs, require

@needs("sox")
def test_marker():
    pass

def test_require():
    require("sox")

def test_have():
    assert not have("sox")
'''


@pytest.mark.parametrize("require_all", ["", "0", "1"])
def test_marker_require_and_have_in_a_real_pytest_run(tmp_path, require_all):
    """End to end, in a child pytest whose PATH lacks sox: the marker and require() skip with the reason
    and have() warns; with SOPRANO_TEST_REQUIRE_ALL=1 all three fail, so the run fails."""
    (tmp_path / "conftest.py").write_text("from system_deps import pytest_configure, pytest_runtest_setup\n")
    (tmp_path / "test_probe.py").write_text(textwrap.dedent(_PROBE))
    empty = tmp_path / "bin"  # a PATH with nothing on it, wherever sox is installed
    empty.mkdir()
    # PYTEST_ADDOPTS is the outer run's (its test paths would follow into the child).
    env = {**{key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"},
           "PATH": str(empty), "PYTHONPATH": str(TESTS),
           "SOPRANO_TEST_REQUIRE_ALL": require_all}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    summary = done.stdout.strip().splitlines()[-1]
    reason = "needs sox: sox (not on PATH); apt-get install sox libsox-fmt-all"
    if require_all == "1":
        assert done.returncode == 1, done.stdout
        assert summary.startswith("2 failed, 1 error"), done.stdout  # the marker fails in setup: an error
        assert done.stdout.count(f"{reason} (SOPRANO_TEST_REQUIRE_ALL=1 turns this skip into a failure)") == 3
    else:
        assert done.returncode == 0, done.stdout
        assert summary.startswith("1 passed, 2 skipped, 1 warning"), done.stdout
        assert "SKIPPED [2] " in done.stdout and f": {reason}" in done.stdout
        assert f"UserWarning: part of this test did not run: {reason}" in done.stdout
