"""Fixtures for the docs tests: the CLI as a subprocess, and a hub cache laid out by hand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOPRANO = [sys.executable, "-m", "soprano_cli"]
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # any 40 hex digits: the hub names snapshots by commit
MODEL_ID = "ekwek/Soprano-1.1-80M"


def run_soprano(args: list[str], *, stdin: bytes = b"", env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`soprano ARGS` in a subprocess, with the (already isolated) environment plus `env`."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(SOPRANO + args, input=stdin, capture_output=True, timeout=60, env=full_env, **kwargs)


def cache_model(hub: Path, repo_id: str, source: Path, snapshot: str = SNAPSHOT) -> Path:
    """Lay out `source` as the `main` revision of `repo_id` in the hub cache `hub`; return the snapshot."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    folder = repo / "snapshots" / snapshot
    folder.mkdir(parents=True)
    for file in source.iterdir():
        shutil.copy(file, folder / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot)
    return folder


@pytest.fixture
def hub_cache() -> Path:
    """The hub cache folder under the test's HF_HOME (not created)."""
    return Path(os.environ["HF_HOME"]) / "hub"


@pytest.fixture
def cached_model(hub_cache, tiny_checkpoint) -> Path:
    """The tiny checkpoint cached as ekwek/Soprano-1.1-80M; returns its snapshot folder."""
    return cache_model(hub_cache, MODEL_ID, tiny_checkpoint)
