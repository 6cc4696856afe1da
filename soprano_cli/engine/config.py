"""What an engine loads and how it runs: `EngineConfig` and the values its choices take. Imports no torch.

The CLI validates a config here before it looks for a daemon, so a misspelt option fails the same
way (and as fast) whether or not one is running; `devices.py` then checks what this machine has.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from soprano_cli.errors import InvalidParameterError

DEVICES = ("auto", "cpu", "cuda", "mps")
BACKENDS = ("auto", "torch", "transformers", "lmdeploy")
DTYPES = ("auto", "float32", "bfloat16", "int8")
LMDEPLOY_INSTALL = "pip install 'soprano-cli[lmdeploy]'"  # what `--backend lmdeploy` needs (CUDA only)

# What max_batch and decoder_batch_size mean when left None. A GPU runs wide batches for little
# more than narrow ones, while a CPU's step grows with the batch; on CUDA, decoder passes are large
# enough to fill the GPU and small enough that their pinned host buffer is reused between passes.
CPU_MAX_BATCH, CUDA_MAX_BATCH = 16, 64  # sentences per LM batch
CPU_DECODER_BATCH, CUDA_DECODER_BATCH = 1, 16  # sentences per decoder pass


@dataclass
class EngineConfig:
    """What to load and how to run it."""

    model: str | None = None  # local folder or hub id; None: $SOPRANO_MODEL or the published model
    device: str = "auto"  # auto, cpu, cuda, mps (cuda:N for one GPU)
    backend: str = "auto"  # auto (= torch), torch, transformers, lmdeploy
    dtype: str = "auto"  # LM weight precision: auto (fastest that holds quality), float32 (exact), bfloat16, int8
    max_batch: int | None = None  # sentences the LM generates at once; None: CPU_MAX_BATCH or CUDA_MAX_BATCH
    decoder_batch_size: int | None = None  # sentences decoded at once (non-streaming); None: *_DECODER_BATCH
    cache_size_mb: int = 100  # lmdeploy's KV cache budget in MB (upstream's default); the torch backend ignores it
    download: bool = True  # fetch a hub model that is not cached yet

    def validated(self) -> "EngineConfig":
        """A copy with device, backend and dtype checked against their names and lowercased."""
        return replace(self, device=check_device(self.device), backend=check_choice("backend", self.backend, BACKENDS),
                       dtype=check_choice("dtype", self.dtype, DTYPES))


def check_choice(what: str, value: str | None, allowed: tuple[str, ...]) -> str:
    """`value` lowercased ('auto' when empty), or InvalidParameterError naming the allowed values."""
    name = (value or "auto").lower()
    if name not in allowed:
        raise InvalidParameterError(f"unknown {what} '{value}' (choose from {', '.join(allowed)})", param=what)
    return name


def check_device(value: str | None) -> str:
    """A device name: one of DEVICES, or cuda:N."""
    name = (value or "auto").lower()
    kind, _, index = name.partition(":")
    check_choice("device", kind, DEVICES)
    if index and (kind != "cuda" or not index.isdigit()):
        raise InvalidParameterError(f"unknown device '{value}' (choose from {', '.join(DEVICES)}, or cuda:N)",
                                    param="device")
    return name
