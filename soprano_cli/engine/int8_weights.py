"""int8 weights: each row rounded to 8 bits on its own scale, and fbgemm's packing and product of them.

Both int8 kernels take these weights: fbgemm's (`fbgemm_pack`, `fbgemm_rows`) and soprano's own
(`int8_kernel`, which checks its product against fbgemm's); `quantize.py` builds the layers.
"""

from __future__ import annotations

import functools
import threading
import warnings

import torch
from torch import Tensor

# Layers are quantized on two threads, and `warnings.catch_warnings` is not thread-safe: a
# thread leaving it restores the filters it found, which can drop another thread's "ignore"
# just before that thread's (once-per-process) deprecation warning is shown. One at a time.
_QUANTIZED_TENSOR_LOCK = threading.Lock()


def quantize_weight(weight: torch.Tensor, scale_dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight -> int8 weight and one scale per output row (symmetric, absmax)."""
    weight = weight.detach()
    low, high = torch.aminmax(weight, dim=1)  # no |weight| temporary
    scale = torch.maximum(-low, high).float().clamp(min=1e-8) / 127.0  # (out,)
    quantized = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    # A few rows at a time: whole-matrix float temporaries would grow the heap by tens of MB.
    rows = max(1, (1 << 16) // max(weight.shape[1], 1))
    for start in range(0, weight.shape[0], rows):
        part = weight[start:start + rows].float() / scale[start:start + rows, None]
        quantized[start:start + rows] = part.round_().clamp_(-127, 127)
    return quantized, scale.to(scale_dtype)


def fbgemm_pack(integers: Tensor, scales: Tensor) -> torch.classes.quantized.LinearPackedParamsBase:
    """fbgemm's packed weights for an int8 weight (out, in) and its float32 row scales."""
    zero_points = torch.zeros(integers.shape[0], dtype=torch.long)
    # Quantized tensors are deprecated; fbgemm's prepack still takes one.
    with _QUANTIZED_TENSOR_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch._make_per_channel_quantized_tensor(integers, scales.double(), zero_points, 0)
    return torch.ops.quantized.linear_prepack(quantized, None)  # fbgemm's own layout, no copy kept


def fbgemm_rows(rows: Tensor, input_scale: float, packed: torch.classes.quantized.LinearPackedParamsBase) -> Tensor:
    """fbgemm's int8 product of rows already scaled to [-1, 1]."""
    if torch.jit.is_scripting():
        return torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(rows, input_scale, 128, packed)
    return _fbgemm_rows_unchecked(rows, input_scale, packed)


@torch.jit.unused
def _fbgemm_rows_unchecked(rows: Tensor, input_scale: float,
                           packed: torch.classes.quantized.LinearPackedParamsBase) -> Tensor:
    return _fbgemm_linear()(rows, input_scale, 128, packed)


@functools.cache
def _fbgemm_linear():
    """fbgemm's linear as the bare C++ function: `torch.ops` adds microseconds of Python checks to
    each call (for fake script objects, which never occur here), and a step makes 69 calls."""
    overload = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32.default
    return getattr(overload, "_op", overload)  # a private attribute: the checked call where it is gone
