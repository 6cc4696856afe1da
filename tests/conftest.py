"""Shared fixtures: the reference checkpoint, golden vectors, a sandbox for user directories; the `needs` hooks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from system_deps import pytest_configure, pytest_runtest_setup  # noqa: F401  (the `needs` marker's hooks)

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
TINY_CHECKPOINT = REFERENCE_DIR / "tiny"


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Keep every test away from the user's caches, runtime dir, daemon and the network."""
    home = tmp_path_factory.mktemp("home")
    runtime = home / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    for name in list(os.environ):
        if name.startswith("SOPRANO_"):
            monkeypatch.delenv(name)
    # Tests never reach a daemon the developer may have running.
    monkeypatch.setenv("SOPRANO_SERVER", "none")
    yield


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """The official-layout tiny checkpoint from shared/reference."""
    assert (TINY_CHECKPOINT / "config.json").exists(), f"missing {TINY_CHECKPOINT}"
    return TINY_CHECKPOINT


@pytest.fixture(scope="session")
def golden():
    """Golden vectors from the reference implementation (see shared/reference/README.md)."""
    import json

    import numpy as np

    arrays = np.load(REFERENCE_DIR / "golden.npz")
    meta = json.loads((REFERENCE_DIR / "golden.json").read_text())
    return meta, arrays
