"""The LM through lmdeploy's TurboMind engine (CUDA only): upstream's fastest GPU path.

lmdeploy schedules its own batches, so this backend generates each sentence through lmdeploy's
pipeline with hidden states returned, then hands frames to the common decoder. It is imported
only when asked for, and `devices.select_backend` has already checked CUDA and the package.
"""

from __future__ import annotations

from pathlib import Path

import torch

from soprano_cli.engine.checkpoint import LMConfig
from soprano_cli.errors import BackendUnavailableError


class LMDeployLM:
    """Placeholder adapter: lmdeploy's pipeline API does not fit the per-step slot interface."""

    def __init__(self, pipeline, config: LMConfig):
        self.pipeline = pipeline
        self.config = config

    @classmethod
    def load(cls, folder: Path, config: LMConfig, *, device: torch.device, cache_size_mb: int) -> "LMDeployLM":
        raise BackendUnavailableError(
            "the lmdeploy backend is not supported by this version of soprano-cli; "
            "use --backend torch (the default, with CUDA graphs on GPUs)"
        )
