"""int8 weights for the LM's linear layers, and the probe that decides whether they hold quality.

Decoding one token reads every weight once, so on a CPU its speed is memory bandwidth: int8
weights (one scale per output channel) read a quarter of float32's bytes. Two kernels run them:

- on x86 CPUs, fbgemm's int8 linear (`DynamicInt8Linear`): each call quantizes every input row
  to 8 bits on its own scale and multiplies in integers (VNNI), 2-5x faster than any float
  kernel from one sentence to a batch of 32;
- elsewhere (CUDA, or a CPU without fbgemm), PyTorch's int8-weight kernel with bfloat16
  activations (`Int8Linear`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from soprano_cli.engine.lm import inverse_rms

# A mode must keep every probed hidden state this close (cosine) to float32 to be chosen by `auto`.
MIN_COSINE = 0.999
# The int8 decoder must keep this signal-to-noise ratio against the float32 decoder on the same frames.
MIN_DECODER_SNR_DB = 40.0
PROBE_TEXT = "[STOP][TEXT]the quick brown fox jumps over the lazy dog, then naps until noon.[START]"


COMPUTE_DTYPE = torch.bfloat16  # activations in the int8-weight kernel

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
        layer.weight, layer.scales = quantize_weight(weight, COMPUTE_DTYPE)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.scales.dtype)
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


class DynamicInt8Linear(nn.Module):
    """y = x W^T through fbgemm: int8 weights prepacked once, each input row quantized on its own.

    fbgemm's dynamic linear takes one scale for a whole input; sharing it across rows would make
    a sentence's output depend on its batch neighbours (and lose precision on quiet rows). So each
    row is scaled to [-1, 1] first, quantized with one fixed scale, and scaled back after.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        weight = weight.detach().float()
        # Added after the rows are scaled back (a packed bias would be scaled with them).
        self.bias = None if bias is None else bias.detach().float().clone()
        self.out_features, self.in_features = weight.shape
        integers, scales = quantize_weight(weight)  # vectorized; torch.quantize_per_channel is 6x slower
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        # Quantized tensors are deprecated; fbgemm's prepack still takes one.
        with _QUANTIZED_TENSOR_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = torch._make_per_channel_quantized_tensor(integers, scales.double(), zero_points, 0)
        self.packed = torch.ops.quantized.linear_prepack(quantized, None)  # fbgemm's own layout, no copy kept
        # Rows in [-1, 1] as uint8 around 128. Without VNNI, fbgemm's 16-bit accumulation can
        # saturate on full-range inputs, so those CPUs get 7 bits.
        self.input_scale = 1 / 127 if cpu_has_flag("avx512_vnni", "avx_vnni", "amx_int8") else 1 / 63

    @property
    def weight(self) -> torch.Tensor:
        """The int8 weight (out, in), unpacked on request (for inspection, not for the math)."""
        return torch.ops.quantized.linear_unpack(self.packed)[0].int_repr()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = x.dim() == 2 and x.dtype == torch.float32  # a decode step's rows: no reshaping
        flat = x if plain else x.reshape(-1, self.in_features).float()
        row_max = row_max_of(flat)
        out = self._scaled_back(self._multiply(flat / row_max), row_max)
        return out if plain else out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def normed(self, x: torch.Tensor, norm_weight: torch.Tensor, eps: float) -> torch.Tensor:
        """`self(rms_norm(x) * norm_weight)` for float32 rows (B, in), in fewer operations.

        The row scaling above divides out any per-row factor, so the norm's 1/rms is applied to
        the output instead of the input: a decode step is bound by its operator count as much
        as by its weights, and this saves the norm's own half dozen.
        """
        weighted = x * norm_weight
        row_max = row_max_of(weighted)
        out = self._multiply(weighted.div_(row_max))
        return self._scaled_back(out, inverse_rms(x, eps).mul_(row_max))

    def added_to(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """`residual + self(x)` for float32 rows (B, in): the residual is added as the rows are
        scaled back, one operation instead of two (and the bias after, where there is one)."""
        row_max = row_max_of(x)
        out = torch.addcmul(residual, self._multiply(x / row_max), row_max)
        return out if self.bias is None else out.add_(self.bias)

    def _multiply(self, rows: torch.Tensor) -> torch.Tensor:
        """fbgemm's int8 product of rows already scaled to [-1, 1]."""
        return _fbgemm_linear()(rows, self.input_scale, 128, self.packed)

    def _scaled_back(self, out: torch.Tensor, row_scale: torch.Tensor) -> torch.Tensor:
        return out.mul_(row_scale) if self.bias is None else torch.addcmul(self.bias, out, row_scale)


def row_max_of(rows: torch.Tensor) -> torch.Tensor:
    """Each row's largest magnitude (B, 1), kept above 0 so an all-zero row divides safely."""
    return rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12)


@functools.cache
def _fbgemm_linear():
    """fbgemm's linear as the bare C++ function: `torch.ops` adds about 4 us of Python checks to
    each call (for fake script objects, which never occur here), and a step makes 69 calls."""
    overload = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32.default
    return getattr(overload, "_op", overload)  # a private attribute: the checked call where it is gone


def use_fbgemm(device: torch.device) -> bool:
    """fbgemm's int8 kernels serve x86 CPUs (AVX2 or better)."""
    return (device.type == "cpu" and "fbgemm" in torch.backends.quantized.supported_engines
            and hasattr(torch.ops.quantized, "linear_with_input_q_dq_qweight_dq_output_fp32")
            and cpu_has_flag("avx2", "avx512f"))


def int8_supported(device: torch.device) -> bool:
    """True where an int8 kernel exists and is fast: fbgemm on x86, bfloat16 math on AVX512-BF16/AMX, or CUDA."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    if use_fbgemm(device):
        return True
    return hasattr(torch.ops.aten, "_weight_int8pack_mm") and cpu_has_fast_bfloat16()


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU flags /proc/cpuinfo lists, read once (every int8 layer asks)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as info:
            return frozenset(next((line for line in info if line.startswith("flags")), "").split())
    except OSError:
        return frozenset()


def cpu_has_flag(*names: str) -> bool:
    """Whether /proc/cpuinfo lists any of these CPU flags (False where it cannot be read)."""
    return any(name in _cpu_flags() for name in names)


def cpu_has_fast_bfloat16() -> bool:
    return cpu_has_flag("avx512_bf16", "amx_bf16")


def int8_linear(weight: torch.Tensor, device: torch.device) -> nn.Module:
    """The fastest int8 linear layer for `device`, quantized from a float (out, in) weight."""
    if use_fbgemm(device):
        return DynamicInt8Linear(weight)
    return Int8Linear.from_float(weight).to(device)


def _linears(lm: nn.Module):
    """(parent, name, layer) for every linear layer of the transformer blocks."""
    for block in lm.model.layers:
        for parent in (block.self_attn, block.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, (nn.Linear, Int8Linear, DynamicInt8Linear)):
                    yield parent, name, child


def quantize_int8(lm: nn.Module) -> nn.Module:
    """Replace the blocks' linear layers and the head with int8 ones, in place (embeddings stay float)."""
    device = lm.model.embed_tokens.weight.device
    for parent, name, child in [*_linears(lm), (lm, "lm_head", lm.lm_head)]:
        setattr(parent, name, int8_linear(child.weight, device))
    return lm


def decoder_int8_supported(device: torch.device) -> bool:
    """The decoder's int8 layers need fbgemm (x86 CPUs); its batches of steps are compute-bound."""
    return use_fbgemm(device)


def quantize_decoder(decoder: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """Replace each ConvNeXt block's two linear layers with int8 ones, in place.

    Returns what was replaced, so `restore_decoder` can undo it. The head's output layer stays
    float32: its 2050 log-magnitude and phase bins cost about 15 dB of SNR in int8.
    """
    from concurrent.futures import ThreadPoolExecutor

    replaced = [(block, name, getattr(block, name)) for block in decoder.decoder.convnext
                for name in ("pwconv1", "pwconv2") if isinstance(getattr(block, name), nn.Linear)]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="soprano-quantize") as pool:  # kernels release the GIL
        layers = list(pool.map(lambda item: DynamicInt8Linear(item[2].weight, item[2].bias), replaced))
    for (block, name, _), layer in zip(replaced, layers):
        setattr(block, name, layer)
    # The other tensors still view decoder.pth's memory map, which keeps every page of it that
    # was read (the float32 layers just replaced: ~110 MB at the published sizes) resident.
    # Copies of those few small tensors let the map go.
    for module in decoder.modules():
        for tensors in (module._parameters, module._buffers):
            for key, tensor in tensors.items():
                if tensor is not None:
                    copy = tensor.detach().clone()
                    tensors[key] = nn.Parameter(copy, requires_grad=False) if isinstance(tensor, nn.Parameter) else copy
    return replaced


def restore_decoder(replaced: list[tuple[nn.Module, str, nn.Module]]) -> None:
    for block, name, layer in replaced:
        setattr(block, name, layer)


def snr_db(reference, candidate) -> float:
    """Signal-to-noise ratio of `candidate` against `reference` (arrays), in dB."""
    import numpy as np

    reference, candidate = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    noise = float(((reference - candidate) ** 2).sum())
    return float(10 * np.log10(max(float((reference ** 2).sum()), 1e-30) / max(noise, 1e-30)))


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
    raw = f"{weights}|{stat.st_size}|{stat.st_mtime_ns}|{torch.__version__}|{MIN_COSINE}|{MIN_DECODER_SNR_DB}"
    return hashlib.sha1(raw.encode()).hexdigest()


def cached_choice(folder: Path) -> tuple[str, str] | None:
    """What an earlier `auto` probe chose for this checkpoint on this machine: (LM, decoder) precision."""
    try:
        entry = json.loads(_choices_file().read_text()).get(_checkpoint_key(folder), {})
        choice, decoder = entry.get("choice"), entry.get("decoder")
    except (OSError, ValueError, AttributeError):
        return None
    if choice in ("int8", "float32") and decoder in ("int8", "float32"):
        return choice, decoder
    return None


def remember_choice(folder: Path, choice: str, cosine: float, decoder: str, decoder_snr_db: float | None) -> None:
    """Record a probe's outcome so later loads skip the float32 pass (best effort)."""
    path = _choices_file()
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        known[_checkpoint_key(folder)] = {"choice": choice, "cosine": cosine, "decoder": decoder,
                                          "decoder_snr_db": decoder_snr_db, "model": str(folder)}
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(known, indent=1))
        temporary.replace(path)
    except (OSError, ValueError):
        pass
