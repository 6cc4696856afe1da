"""Our LM from a checkpoint's tensors: built on the meta device, then filled tensor by tensor in
its precision (int8 quantized on two threads as the file is read), so peak memory stays near the
final model's size.
"""

from __future__ import annotations

import torch
from torch import nn

from soprano_cli.engine.checkpoint import LMConfig
from soprano_cli.engine.lm import Qwen3LM
from soprano_cli.engine.memory import release_free_memory
from soprano_cli.engine.quantize import int8_linear, keep_in_float16
from soprano_cli.errors import ModelLoadError

# Our fused parameters and the checkpoint tensors they are stacked from.
_FUSED = {"self_attn.qkv_proj.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
          "mlp.gate_up_proj.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight")}


def _sources(name: str) -> tuple[str, ...]:
    """Checkpoint keys that make up our parameter `name`."""
    for fused, parts in _FUSED.items():
        if name.endswith(fused):
            prefix = name[: -len(fused)]
            return tuple(prefix + part for part in parts)
    return (name,)


def build_lm(config: LMConfig, weights, *, device="cpu", dtype: torch.dtype = torch.float32,
             int8: bool = False, float_blocks: frozenset[int] = frozenset()) -> Qwen3LM:
    """Build the LM on the meta device, then fill it tensor by tensor from the checkpoint.

    `weights` maps checkpoint keys to tensors (a dict, or a lazy `checkpoint.LMWeights`); each is
    converted to `dtype` (or quantized, with `int8`) as it is read, so peak memory stays near the
    final model's size. With `int8`, the blocks numbered in `float_blocks` stay in `dtype`, or go
    to float16 on soprano's kernel where it runs (`quantize.keep_in_float16`).
    """
    with torch.device("meta"):
        model = Qwen3LM(config)
    tied = "lm_head.weight" not in weights
    used: set[str] = set()
    state = {}
    quantizing = _Quantizer(model, torch.device(device)) if int8 else None
    for name in model.state_dict():
        keys = ("model.embed_tokens.weight",) if (name == "lm_head.weight" and tied) else _sources(name)
        parts = [weights[key] for key in keys]
        used.update(keys)
        try:
            tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        except RuntimeError:
            raise ModelLoadError("model.safetensors does not match config.json: projection shapes differ") from None
        if int8 and (name == "lm_head.weight" or (name.endswith("_proj.weight") and name.startswith("model.layers.")
                                                   and int(name.split(".")[2]) not in float_blocks)):
            module = model.get_submodule(name.removesuffix(".weight"))
            if tuple(tensor.shape) != (module.out_features, module.in_features):
                raise ModelLoadError(f"model.safetensors does not match config.json: {name} has shape "
                                     f"{tuple(tensor.shape)}")
            quantizing.submit(name.removesuffix(".weight"), tensor)
        else:
            state[name] = tensor.to(device=device, dtype=dtype)
    if quantizing is not None:
        quantizing.finish()
    unexpected = sorted(set(weights.keys()) - used)
    if unexpected:
        raise ModelLoadError(f"model.safetensors does not match config.json: unexpected {unexpected[0]}")
    tie = tied and "lm_head.weight" in state  # an int8 head is its own (quantized) copy
    if tie:
        del state["lm_head.weight"]
    try:
        # Not strict: the int8 layers were set whole above, and a tied head is set below.
        model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ModelLoadError(f"model.safetensors does not match config.json: {' '.join(first[:2])}") from None
    if tie:
        model.tie_weights()
    for index in sorted(float_blocks) if int8 else ():
        keep_in_float16(model.model.layers[index])  # half the bytes, where soprano's kernel runs
    return model.eval()


class _Quantizer:
    """Quantizes layers on two threads while the next tensors are read (the kernels release the
    GIL), with few float tensors in flight so peak memory stays near the int8 model's size."""

    IN_FLIGHT = 6  # fewer leave the workers waiting on reads (README, Performance: int8)
    # Freed float tensors pile up in the worker threads' heaps: trimming every few layers keeps
    # the load's peak down for a few hundredths of a second (README, Performance: int8).
    TRIM_EVERY = 4

    def __init__(self, model: nn.Module, device: torch.device):
        from concurrent.futures import ThreadPoolExecutor

        self.model, self.device = model, device
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="soprano-quantize")
        self.pending: list = []
        self.placed = 0

    def submit(self, path: str, weight: torch.Tensor) -> None:
        self.pending.append((path, self.pool.submit(int8_linear, weight, self.device)))
        while len(self.pending) >= self.IN_FLIGHT:
            self._place(*self.pending.pop(0))

    def finish(self) -> None:
        for path, future in self.pending:
            self._place(path, future)
        self.pending = []
        self.pool.shutdown()

    def _place(self, path: str, future) -> None:
        parent, _, child = path.rpartition(".")
        setattr(self.model.get_submodule(parent) if parent else self.model, child, future.result())
        self.placed += 1
        if self.placed % self.TRIM_EVERY == 0:
            release_free_memory()
