"""Shared fixtures: the tiny checkpoint, the reference implementation's outputs on it, a sandbox for user
directories; the `needs` hooks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from checkpoints import GOLDEN_TEXTS, TINY_CHECKPOINT
from system_deps import pytest_configure, pytest_runtest_setup  # noqa: F401  (the `needs` marker's hooks)


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
    # soprano's int8 kernel is built once for the whole run (each test's cache is new), in and out of process.
    monkeypatch.setenv("SOPRANO_KERNEL_CACHE", str(tmp_path_factory.getbasetemp() / "kernels"))
    yield


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """The trained tiny checkpoint in the official layout (tests/data/tiny)."""
    assert (TINY_CHECKPOINT / "config.json").exists(), f"missing {TINY_CHECKPOINT}"
    return TINY_CHECKPOINT


@pytest.fixture(scope="session")
def golden(tiny_checkpoint):
    """What the reference implementation produces for GOLDEN_TEXTS on the tiny checkpoint, computed live.

    (meta, arrays): meta["cases"][i] has the text, prompt, finish reason, frames and samples of case i;
    arrays has prompt_ids_i, gen_ids_i (ending with EOS), hidden_i (the decoder's frames) and audio_i.
    """
    from reference_impl import ReferenceSoprano

    reference = ReferenceSoprano(tiny_checkpoint)
    cases, arrays = [], {}
    for i, text in enumerate(GOLDEN_TEXTS):
        out = reference.run(text)
        cases.append({"text": text, "prompt": f"[STOP][TEXT]{text}[START]", "finish_reason": out.finish_reason,
                      "frames": len(out.hidden), "samples": len(out.audio)})
        arrays.update({f"prompt_ids_{i}": np.array(out.prompt_ids), f"gen_ids_{i}": np.array(out.gen_ids),
                       f"hidden_{i}": out.hidden, f"audio_{i}": out.audio})
    return {"cases": cases, "sample_rate": 32000, "samples_per_frame": 2048}, arrays
