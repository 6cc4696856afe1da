"""Weight-only int8 for the LM's linear layers, and the probe that decides whether it holds quality.

Decoding one token reads every weight once, so on a CPU its speed is memory bandwidth: int8
weights (one scale per output channel) read a quarter of float32's bytes. Activations run in
bfloat16 through PyTorch's int8-weight kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# A mode must keep every probed hidden state this close (cosine) to float32 to be chosen by `auto`.
MIN_COSINE = 0.999
PROBE_TEXT = "[STOP][TEXT]the quick brown fox jumps over the lazy dog, then naps until noon.[START]"


COMPUTE_DTYPE = torch.bfloat16  # activations in the int8-weight kernel


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight -> int8 weight and one scale per output row (symmetric, absmax)."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # (out,)
    quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return quantized.contiguous(), scale.to(COMPUTE_DTYPE)


class Int8Linear(nn.Module):
    """y = x W^T with W stored as int8 rows times a per-row scale."""

    def __init__(self, out_features: int, in_features: int):
        super().__init__()
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.empty(out_features, dtype=COMPUTE_DTYPE))
        self.out_features, self.in_features = out_features, in_features

    @classmethod
    def from_float(cls, weight: torch.Tensor) -> "Int8Linear":
        layer = cls(*weight.shape)
        layer.weight, layer.scales = quantize_weight(weight)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.scales.dtype)
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def int8_supported(device: torch.device) -> bool:
    """True where the int8-weight kernel exists and is fast (bfloat16 math on AVX512-BF16/AMX, or CUDA)."""
    if device.type == "cuda":
        return True
    if device.type != "cpu" or not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        return False
    return cpu_has_fast_bfloat16()


def cpu_has_fast_bfloat16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def _linears(lm: nn.Module):
    """(parent, name, layer) for every linear layer of the transformer blocks."""
    for block in lm.model.layers:
        for parent in (block.self_attn, block.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, (nn.Linear, Int8Linear)):
                    yield parent, name, child


def quantize_int8(lm: nn.Module) -> nn.Module:
    """Replace the blocks' linear layers with Int8Linear, in place (embeddings and lm_head stay float)."""
    for parent, name, child in _linears(lm):
        setattr(parent, name, Int8Linear.from_float(child.weight))
    return lm


def int8_skeleton(lm: nn.Module) -> None:
    """Swap the blocks' linear layers for empty Int8Linear ones, to be filled from a state dict."""
    for parent, name, child in _linears(lm):
        with torch.device("meta"):
            setattr(parent, name, Int8Linear(child.out_features, child.in_features))


@torch.inference_mode()
def hidden_states(lm, ids: torch.Tensor) -> torch.Tensor:
    """Final-normed hidden states at every position of one sequence: (T, H)."""
    cache = lm.new_cache(1, ids.shape[0])
    positions = torch.arange(ids.shape[0], device=ids.device).unsqueeze(0)
    slot = torch.zeros(1, dtype=torch.long, device=ids.device)
    return lm._run(ids.unsqueeze(0), positions, cache, slot, ids.shape[0], None)[0].float()


def cosine_per_position(reference: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(reference.float(), candidate.float(), dim=-1)


def probe_ids(tokenizer, device) -> torch.Tensor:
    """Token ids of the fixed probe prompt."""
    return torch.tensor(tokenizer.encode(PROBE_TEXT).ids, device=device)


def _choices_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "soprano" / "auto-dtype.json"


def _checkpoint_key(folder: Path) -> str:
    """Identifies a checkpoint file's contents cheaply (path, size, mtime) and the torch doing the math."""
    weights = (folder / "model.safetensors").resolve()
    stat = weights.stat()
    raw = f"{weights}|{stat.st_size}|{stat.st_mtime_ns}|{torch.__version__}|{MIN_COSINE}"
    return hashlib.sha1(raw.encode()).hexdigest()


def cached_choice(folder: Path) -> str | None:
    """What an earlier `auto` probe chose for this checkpoint on this machine, if any."""
    try:
        return json.loads(_choices_file().read_text()).get(_checkpoint_key(folder), {}).get("choice")
    except (OSError, ValueError, AttributeError):
        return None


def remember_choice(folder: Path, choice: str, cosine: float) -> None:
    """Record a probe's outcome so later loads skip the float32 pass (best effort)."""
    path = _choices_file()
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        known[_checkpoint_key(folder)] = {"choice": choice, "cosine": cosine, "model": str(folder)}
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(known, indent=1))
        temporary.replace(path)
    except (OSError, ValueError):
        pass
