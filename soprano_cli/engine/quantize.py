"""Weight-only int8 for the LM's linear layers, and the probe that decides whether it holds quality.

Decoding one token reads every weight once, so on a CPU its speed is memory bandwidth: int8
weights (one scale per output channel) read a quarter of float32's bytes. Activations run in
bfloat16 through PyTorch's int8-weight kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# A mode must keep every probed hidden state this close (cosine) to float32 to be chosen by `auto`.
MIN_COSINE = 0.999
PROBE_TEXT = "[STOP][TEXT]the quick brown fox jumps over the lazy dog, then naps until noon.[START]"


class Int8Linear(nn.Module):
    """y = x W^T with W stored as int8 rows times a per-row scale."""

    def __init__(self, weight: torch.Tensor, compute_dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        weight = weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # (out,)
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight", quantized.contiguous())
        self.register_buffer("scales", scale.to(compute_dtype))
        self.out_features, self.in_features = weight.shape

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


def quantize_int8(lm: nn.Module) -> nn.Module:
    """Replace the transformer blocks' linear layers with Int8Linear (embeddings and lm_head stay float)."""
    for block in lm.model.layers:
        for parent in (block.self_attn, block.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Int8Linear(child.weight))
    return lm


@torch.inference_mode()
def hidden_states(lm, ids: torch.Tensor) -> torch.Tensor:
    """Final-normed hidden states at every position of one sequence: (T, H)."""
    cache = lm.new_cache(1, ids.shape[0])
    positions = torch.arange(ids.shape[0], device=ids.device).unsqueeze(0)
    return lm._run(ids.unsqueeze(0), positions, cache, 0, ids.shape[0], None)[0].float()


def cosine_per_position(reference: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(reference.float(), candidate.float(), dim=-1)


def probe_ids(tokenizer, device) -> torch.Tensor:
    """Token ids of the fixed probe prompt."""
    return torch.tensor(tokenizer.encode(PROBE_TEXT).ids, device=device)
