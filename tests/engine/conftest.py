"""Engine fixtures: loaded engines on the tiny checkpoint and small random checkpoints."""

from __future__ import annotations

import pytest

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.random_checkpoint import CheckpointSizes, write_random_checkpoint


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint) -> Engine:
    return Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32"))


@pytest.fixture(scope="session")
def golden_texts(golden) -> list[str]:
    meta, _ = golden
    return [case["text"] for case in meta["cases"]]


@pytest.fixture(scope="session")
def small_random_checkpoint(tmp_path_factory):
    """Tiny sizes, random weights: never emits EOS, so every sentence runs to its cap."""
    return write_random_checkpoint(tmp_path_factory.mktemp("random") / "ckpt", CheckpointSizes.tiny(), seed=3)
