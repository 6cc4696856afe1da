"""Choosing the device, backend and weight dtype, with clear errors for what this machine lacks."""

from __future__ import annotations

import torch

from soprano_cli.engine.config import BACKENDS, DEVICES, DTYPES, LMDEPLOY_INSTALL, check_choice, check_device
from soprano_cli.errors import BackendUnavailableError

__all__ = ["BACKENDS", "DEVICES", "DTYPES", "select_backend", "select_device", "select_dtype", "to_host"]


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def select_device(name: str = "auto") -> torch.device:
    """`auto` prefers CUDA, then Apple's MPS, then the CPU."""
    name = check_device(name)
    kind = name.split(":")[0]
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("device 'cuda' is not available here (no CUDA GPU or a CPU-only torch); use --device cpu")
    if kind == "mps" and not _mps_available():
        raise BackendUnavailableError("device 'mps' is not available here (needs Apple silicon); use --device cpu")
    return torch.device(name)


def select_backend(name: str, device: torch.device) -> str:
    """`auto` is our own torch LM everywhere; lmdeploy only on CUDA and only when installed."""
    name = check_choice("backend", name, BACKENDS)
    if name == "auto":
        return "torch"
    if name == "lmdeploy":
        if device.type != "cuda":
            raise BackendUnavailableError(
                f"the lmdeploy backend runs only on CUDA GPUs (with `{LMDEPLOY_INSTALL}`); use --backend torch")
        try:
            import lmdeploy  # noqa: F401
        except ImportError:
            raise BackendUnavailableError(f"the lmdeploy backend needs `{LMDEPLOY_INSTALL}`; or use --backend torch") from None
    if name == "transformers":
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise BackendUnavailableError(
                "the transformers backend needs `pip install 'soprano-cli[transformers]'`; or use --backend torch"
            ) from None
    return name


def select_dtype(name: str, device: torch.device) -> str:
    """Validate a weight-precision mode. `auto` stays `auto` on the CPU (the engine probes it) and
    becomes bfloat16 on CUDA; float32 is the exact mode the parity tests pin."""
    name = check_choice("dtype", name, DTYPES)
    if name == "auto" and device.type == "cuda":
        return "bfloat16"
    if name == "auto" and device.type != "cpu":
        return "float32"
    if name == "int8":
        from soprano_cli.engine.quantize import int8_supported

        if not int8_supported(device):
            raise BackendUnavailableError(
                "int8 weights need an x86 CPU with AVX2, a CPU with AVX512-BF16 or AMX, or a CUDA GPU; use --dtype float32")
    return name


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` on the CPU. From a GPU through pinned memory: pageable copies can be many times
    slower, enough to be most of decoding's time for audio (README, Performance: GPU)."""
    if tensor.device.type != "cuda":
        return tensor
    host = tensor.to("cpu", non_blocking=True)
    torch.cuda.current_stream(tensor.device).synchronize()
    return host
