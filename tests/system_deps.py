"""System parts some tests need (programs, shared libraries, a browser): skip without them, fail in CI.

Every test that needs something pip does not install goes through this module: the
`@needs("ffmpeg")` marker (its hooks below are imported by tests/conftest.py), `require("sox")` inside a
fixture or test, or `have("sox")` for an optional extra check. Without the part the test skips
and says what to install. With SOPRANO_TEST_REQUIRE_ALL=1 (what `.ci/run` sets, after installing
all of them) a missing part fails the test instead, so CI never passes by skipping.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_ALL_VARIABLE = "SOPRANO_TEST_REQUIRE_ALL"
# Read once, when pytest imports this module: the autouse isolation fixture clears every
# SOPRANO_* variable before each test runs.
REQUIRE_ALL = os.environ.get(REQUIRE_ALL_VARIABLE, "") not in ("", "0")


@dataclass(frozen=True)
class Part:
    """One system dependency: how to find it and which Debian packages provide it."""

    programs: tuple[str, ...] = ()  # all must be on PATH
    libraries: tuple[str, ...] = ()  # names for ctypes.util.find_library, which sounddevice uses too
    modules: tuple[str, ...] = ()  # Python modules (installed by the test extra, not by apt)
    files: tuple[str, ...] = ()  # paths that must exist
    install: str = ""  # what to run to get it on Debian/Ubuntu

    def missing(self) -> list[str]:
        """What of this part is absent, in words; empty when all of it is there."""
        # find_spec only, never an import: importing sounddevice here would load PortAudio before the
        # PulseAudio fixture has set PULSE_SERVER.
        return ([f"{name} (not on PATH)" for name in self.programs if shutil.which(name) is None]
                + [f"lib{name} (no shared library)" for name in self.libraries if ctypes.util.find_library(name) is None]
                + [f"Python module {name}" for name in self.modules if importlib.util.find_spec(name) is None]
                + [f"{path} (no such file)" for path in self.files if not Path(path).exists()])


PARTS = {
    "alsa": Part(libraries=("asound",), install="apt-get install libasound2"),
    # soprano's int8 kernel is built on first use (soprano_cli/engine/int8_kernel.py)
    "c++": Part(programs=("c++",), install="apt-get install g++"),
    "bash-completion": Part(files=("/usr/share/bash-completion/bash_completion",),
                            install="apt-get install bash-completion"),
    "chromium": Part(programs=("chromium",), install="apt-get install chromium"),
    "ffmpeg": Part(programs=("ffmpeg", "ffprobe"), install="apt-get install ffmpeg"),
    "fish": Part(programs=("fish",), install="apt-get install fish"),
    "man": Part(programs=("man", "groff"), install="apt-get install man-db groff"),
    "mandoc": Part(programs=("mandoc",), install="apt-get install mandoc"),
    "playwright": Part(modules=("playwright",), install="pip install '.[test]'"),
    "portaudio": Part(libraries=("portaudio",), install="apt-get install libportaudio2"),
    "pulseaudio": Part(programs=("pulseaudio", "pactl", "parec"), install="apt-get install pulseaudio pulseaudio-utils"),
    "sox": Part(programs=("sox",), install="apt-get install sox libsox-fmt-all"),
    "zsh": Part(programs=("zsh",), install="apt-get install zsh"),
}


def missing(*names: str) -> str | None:
    """None when every named part is present, else the reason a test cannot run."""
    absent = []
    for name in names:
        part = PARTS[name]  # a KeyError here is a typo in a test, not a missing part
        if gone := part.missing():
            absent.append(f"{name}: {', '.join(gone)}; {part.install}")
    return "needs " + " | ".join(absent) if absent else None


def _not_running(reason: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(f"{reason} ({REQUIRE_ALL_VARIABLE}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason)


def require(*names: str) -> None:
    """Skip the current test (fail it under SOPRANO_TEST_REQUIRE_ALL=1) unless every part is present."""
    if reason := missing(*names):
        _not_running(reason)


def have(name: str) -> bool:
    """For an optional check inside a test: whether the part is there. Absent, the test goes on
    with a warning that says what it did not check; under SOPRANO_TEST_REQUIRE_ALL=1 it fails."""
    reason = missing(name)
    if reason is None:
        return True
    if REQUIRE_ALL:
        _not_running(reason)
    warnings.warn(f"part of this test did not run: {reason}", stacklevel=2)
    return False


def needs(*names: str) -> pytest.MarkDecorator:
    """The marker form of `require`, for tests, classes, modules (pytestmark) and pytest.param."""
    if unknown := [name for name in names if name not in PARTS]:
        raise KeyError(f"unknown system parts {unknown}; known: {sorted(PARTS)}")  # a typo fails collection
    return pytest.mark.needs(*names)


# Hooks, imported by tests/conftest.py.


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*parts): system parts the test needs (tests/system_deps.py); "
                                       f"skips without them, fails under {REQUIRE_ALL_VARIABLE}=1")


def pytest_runtest_setup(item):
    """Apply every `needs` marker before the test's fixtures start (a server, a browser)."""
    names = [name for marker in item.iter_markers("needs") for name in marker.args]
    if names:
        require(*dict.fromkeys(names))  # one message naming everything missing
