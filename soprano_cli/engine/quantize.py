"""int8 weights for the LM's and the decoder's linear layers.

Decoding one token reads every weight once, so on a CPU its speed is memory bandwidth: int8
weights (one scale per output channel) read a quarter of float32's bytes. Two kernels run them:

- on x86 CPUs, fbgemm's int8 linear (`DynamicInt8Linear`): each call quantizes every input row
  to 8 bits on its own scale and multiplies in integers (VNNI), faster than any float kernel
  from one sentence to a batch of 32 (README, Performance: int8). The LM's and the decoder's
  layers run the same arithmetic on soprano's own kernel where it is available (`int8_kernel`):
  the same bits with VNNI (8-bit inputs where fbgemm has 7 with AVX2), read at memory speed
  for the decode step's few rows;
- elsewhere (CUDA, or a CPU without fbgemm), PyTorch's int8-weight kernel with bfloat16
  activations (`Int8Linear`).
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soprano_cli.engine import int8_kernel
from soprano_cli.engine.cpu import cpu_has_fast_bfloat16, cpu_has_flag
from soprano_cli.engine.int8_weights import fbgemm_pack, fbgemm_rows, quantize_weight
from soprano_cli.engine.ops import constant, inverse_rms_with, row_max_of

COMPUTE_DTYPE = torch.bfloat16  # activations in the int8-weight kernel


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
    """y = x W^T in int8: weights quantized once, each input row quantized on its own.

    fbgemm's dynamic linear takes one scale for a whole input; sharing it across rows would make
    a sentence's output depend on its batch neighbours (and lose precision on quiet rows). So each
    row is scaled to [-1, 1] first, quantized with one fixed scale, and scaled back after.

    The weights are fbgemm's prepacked ones, or with `own_kernel`, soprano's kernel's packing
    where that kernel is available: the same products bit for bit with VNNI, 8-bit inputs where
    fbgemm takes 7 with AVX2.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, own_kernel: bool = False):
        super().__init__()
        weight = weight.detach().float()
        # Added after the rows are scaled back (a packed bias would be scaled with them).
        self.bias = None if bias is None else bias.detach().float().clone()
        self.out_features, self.in_features = weight.shape
        integers, scales = quantize_weight(weight)  # vectorized; torch.quantize_per_channel is several times slower
        on_kernel = own_kernel and int8_kernel.supports(self.in_features) and int8_kernel.available()
        # Rows in [-1, 1] in 8 bits. Without VNNI, fbgemm's 16-bit accumulation can saturate on
        # full-range inputs, so fbgemm gets 7 bits there (soprano's kernel keeps 8 on any CPU).
        self.input_scale = 1 / 127 if on_kernel or cpu_has_flag("avx512_vnni", "avx_vnni", "amx_int8") else 1 / 63
        # One of the two, as lists: the shape the fused functions below (and the decode step) take.
        self.packed_list: List[torch.classes.quantized.LinearPackedParamsBase] = []
        self.kernel_parts: List[Tensor] = []
        if on_kernel:
            self.kernel_parts = int8_kernel.pack(integers, scales, self.input_scale)
        else:
            self.packed_list = [fbgemm_pack(integers, scales)]

    @property
    def packed(self) -> torch.classes.quantized.LinearPackedParamsBase | None:
        """fbgemm's packed weights, or None where the layer runs on soprano's kernel."""
        return self.packed_list[0] if self.packed_list else None

    @property
    def weight(self) -> torch.Tensor:
        """The int8 weight (out, in), unpacked on request (for inspection, not for the math)."""
        if self.kernel_parts:
            blocks, quads = self.kernel_parts[0].shape[:2]
            unpacked = self.kernel_parts[0].permute(0, 2, 1, 3).reshape(blocks * int8_kernel.block(), quads * 4)
            return unpacked[:self.out_features].clone()
        return torch.ops.quantized.linear_unpack(self.packed)[0].int_repr()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = x.dim() == 2 and x.dtype == torch.float32  # a decode step's rows: no reshaping
        flat = x if plain else x.reshape(-1, self.in_features).float()
        if self.kernel_parts:  # the whole layer in one call
            out = int8_kernel.linear_product(flat, self.kernel_parts, self.bias, self.input_scale)
            return out if plain else out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        row_max = row_max_of(flat)
        out = self._scaled_back(self._multiply(flat / row_max), row_max)
        return out if plain else out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def gelu_of(self, x: torch.Tensor, shifted: bool = False) -> torch.Tensor:
        """`F.gelu(self(x))` for float32 rows (M, in): one call on soprano's kernel (`shifted` rows
        as `int8_kernel.linear_product` takes them)."""
        if self.kernel_parts:
            return int8_kernel.linear_product(x, self.kernel_parts, self.bias, self.input_scale, gelu=True,
                                              shifted=shifted)
        return F.gelu(self(x))

    def scaled_added(self, x: torch.Tensor, column_scales: torch.Tensor, residual: torch.Tensor,
                     shifted: bool = False) -> torch.Tensor:
        """`residual + column_scales * self(x)` for float32 rows (M, in): one call on soprano's kernel
        (`shifted` rows, such as GELU's outputs, as `int8_kernel.linear_product` takes them)."""
        if self.kernel_parts:
            return int8_kernel.linear_product(x, self.kernel_parts, self.bias, self.input_scale,
                                              column_scales=column_scales, residual=residual, shifted=shifted)
        return residual + column_scales * self(x)

    def normed(self, x: torch.Tensor, norm_weight: torch.Tensor, eps: float) -> torch.Tensor:
        """`self(rms_norm(x) * norm_weight)` for float32 rows (B, in), in fewer operations.

        The row scaling above divides out any per-row factor, so the norm's 1/rms is applied to
        the output instead of the input: a decode step is bound by its operator count as much
        as by its weights, and this saves the norm's own half dozen.
        """
        out = int8_normed(x, norm_weight, self.packed_list, self.kernel_parts, 0, constant(eps, x.device),
                          self.input_scale)
        return out if self.bias is None else out.add_(self.bias)

    def added_to(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """`residual + self(x)` for float32 rows (B, in): the residual is added as the rows are
        scaled back, one operation instead of two (and the bias after, where there is one)."""
        out = int8_added(x, residual, self.packed_list, self.kernel_parts, 0, self.input_scale)
        return out if self.bias is None else out.add_(self.bias)

    def _multiply(self, rows: torch.Tensor) -> torch.Tensor:
        """The int8 product of rows already scaled to [-1, 1]."""
        return int8_rows(rows, self.input_scale, self.packed_list, self.kernel_parts, 0)

    def _scaled_back(self, out: torch.Tensor, row_scale: torch.Tensor) -> torch.Tensor:
        return out.mul_(row_scale) if self.bias is None else torch.addcmul(self.bias, out, row_scale)


# The layers' fused forms as free functions: `DynamicInt8Linear` calls them, and so does the CPU
# decode step (`step.py`), which TorchScript compiles with them; the same body both ways. An int8
# layer is `layer` of either list: fbgemm's packed weights, or soprano's kernel's three tensors
# per layer (`int8_kernel.pack`); the other list is empty.

def int8_normed(x: Tensor, norm_weight: Tensor, packed: List[torch.classes.quantized.LinearPackedParamsBase],
                kernel_parts: List[Tensor], layer: int, eps: Tensor, input_scale: float) -> Tensor:
    """`DynamicInt8Linear.normed` of a bias-free layer, with the norm's eps as a float32 scalar tensor
    (soprano's kernel does all of it in one call)."""
    if len(kernel_parts) > 0:
        first = 3 * layer
        if torch.jit.is_scripting():
            return torch.ops.soprano.int8_normed(x, norm_weight, eps, kernel_parts[first], kernel_parts[first + 1],
                                                 kernel_parts[first + 2], input_scale)
        return _kernel_normed_unchecked(x, norm_weight, eps, kernel_parts[first:first + 3], input_scale)
    weighted = x * norm_weight
    row_max = row_max_of(weighted)
    out = int8_rows(weighted.div_(row_max), input_scale, packed, kernel_parts, layer)
    return out.mul_(inverse_rms_with(x, eps).mul_(row_max))


def int8_added(x: Tensor, residual: Tensor, packed: List[torch.classes.quantized.LinearPackedParamsBase],
               kernel_parts: List[Tensor], layer: int, input_scale: float) -> Tensor:
    """`DynamicInt8Linear.added_to` of a bias-free layer."""
    if len(kernel_parts) > 0:
        first = 3 * layer
        if torch.jit.is_scripting():
            return torch.ops.soprano.int8_added(x, residual, kernel_parts[first], kernel_parts[first + 1],
                                                kernel_parts[first + 2], input_scale)
        return _kernel_added_unchecked(x, residual, kernel_parts[first:first + 3], input_scale)
    row_max = row_max_of(x)
    return torch.addcmul(residual, int8_rows(x / row_max, input_scale, packed, kernel_parts, layer), row_max)


def int8_gated_added(gate_up: Tensor, residual: Tensor,
                     packed: List[torch.classes.quantized.LinearPackedParamsBase], kernel_parts: List[Tensor],
                     layer: int, input_scale: float) -> Tensor:
    """`int8_added` of the gated MLP's activation, silu(gate) * up for gate_up = [gate | up] (B, 2I):
    the MLP's down projection (soprano's kernel does the activation in the same call)."""
    if len(kernel_parts) > 0:
        first = 3 * layer
        if torch.jit.is_scripting():
            return torch.ops.soprano.int8_gated_added(gate_up, residual, kernel_parts[first], kernel_parts[first + 1],
                                                      kernel_parts[first + 2], input_scale)
        return _kernel_gated_added_unchecked(gate_up, residual, kernel_parts[first:first + 3], input_scale)
    inner = gate_up.shape[1] // 2
    activated = F.silu(gate_up[:, :inner]).mul_(gate_up[:, inner:])  # two slices: chunk costs four operations
    return int8_added(activated, residual, packed, kernel_parts, layer, input_scale)


def int8_rows(rows: Tensor, input_scale: float, packed: List[torch.classes.quantized.LinearPackedParamsBase],
              kernel_parts: List[Tensor], layer: int) -> Tensor:
    """The int8 product of rows already scaled to [-1, 1], on whichever kernel holds the layer."""
    if len(kernel_parts) > 0:
        first = 3 * layer
        if torch.jit.is_scripting():
            return torch.ops.soprano.int8_rows(rows, kernel_parts[first], kernel_parts[first + 1],
                                               kernel_parts[first + 2], input_scale)
        return _kernel_rows_unchecked(rows, kernel_parts[first:first + 3], input_scale)
    return fbgemm_rows(rows, input_scale, packed[layer])


@torch.jit.unused
def _kernel_rows_unchecked(rows: Tensor, parts: List[Tensor], input_scale: float) -> Tensor:
    return int8_kernel.rows_product(rows, parts, input_scale)


@torch.jit.unused
def _kernel_normed_unchecked(x: Tensor, norm_weight: Tensor, eps: Tensor, parts: List[Tensor],
                             input_scale: float) -> Tensor:
    return int8_kernel.normed_product(x, norm_weight, eps, parts, input_scale)


@torch.jit.unused
def _kernel_gated_added_unchecked(gate_up: Tensor, residual: Tensor, parts: List[Tensor], input_scale: float) -> Tensor:
    return int8_kernel.gated_added_product(gate_up, residual, parts, input_scale)


@torch.jit.unused
def _kernel_added_unchecked(x: Tensor, residual: Tensor, parts: List[Tensor], input_scale: float) -> Tensor:
    return int8_kernel.added_product(x, residual, parts, input_scale)


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


def int8_linear(weight: torch.Tensor, device: torch.device) -> nn.Module:
    """The fastest int8 linear layer for `device`, quantized from a float (out, in) weight."""
    if use_fbgemm(device):
        return DynamicInt8Linear(weight, own_kernel=True)
    return Int8Linear.from_float(weight).to(device)


FLOAT16_MAX = 65504.0  # the largest float16: a weight beyond it keeps its block in float32


class PackedLinear(nn.Module):
    """y = x W^T (+ b) with W packed for soprano's kernel (`float_product`) in float16 or float32,
    and float32 arithmetic, each output summed in input order: the same for a row in any batch.

    Two uses: the LM blocks `auto` keeps out of int8, in float16 (half of float32's bytes a decode
    step; 11 bits of each weight, where int8 keeps about 7 of a row's typical weight); and the int8
    decoder's head, in float32 (int8 would make it audible), where a streamed chunk's few rows
    read W at memory speed and the float32 GEMM's small-batch path takes twice as long or more."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        # (blocks, in, block): the out channels padded to whole blocks, cut off again after the product
        self.register_buffer("packed_weight", int8_kernel.pack_float(weight, dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @property
    def weight(self) -> torch.Tensor:
        """The weight (out, in) in float32, unpacked on request (for inspection, not for the math)."""
        unpacked = self.packed_weight.transpose(1, 2).reshape(-1, self.in_features)[:self.out_features]
        return unpacked.float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float().contiguous()
        out = int8_kernel.float_product(flat, self.packed_weight)[:, :self.out_features]
        out = out + self.bias if self.bias is not None else out.contiguous()
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def keep_in_float16(block: nn.Module) -> bool:
    """Make an LM block's four linear layers float16 `PackedLinear`s, in place, where soprano's kernel runs
    here and every weight fits float16 and its blocks; returns whether it did (else the block is
    left as it was, in float32)."""
    linears = list(_block_linears(block))
    if not (int8_kernel.available() and all(
            type(layer) is nn.Linear and layer.bias is None and layer.weight.device.type == "cpu"
            and int8_kernel.supports_half(layer.out_features, layer.in_features)
            and float(layer.weight.detach().abs().max()) <= FLOAT16_MAX for _, _, layer in linears)):
        return False
    for parent, name, layer in linears:
        setattr(parent, name, PackedLinear(layer.weight, dtype=torch.float16))
    return True


def _block_linears(block: nn.Module):
    """(parent, name, layer) for each linear layer of one transformer block, in any precision."""
    for parent in (block.self_attn, block.mlp):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Linear, Int8Linear, DynamicInt8Linear, PackedLinear)):
                yield parent, name, child


def _linears(lm: nn.Module):
    """(parent, name, layer) for every linear layer of the transformer blocks."""
    for block in lm.model.layers:
        yield from _block_linears(block)


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
    float32: its 2050 log-magnitude and phase bins cost about 15 dB of SNR in int8. Where soprano's
    kernel runs, it is a `PackedLinear` (the same float32 weights).
    """
    from concurrent.futures import ThreadPoolExecutor

    replaced = [(block, name, getattr(block, name)) for block in decoder.decoder.convnext
                for name in ("pwconv1", "pwconv2") if isinstance(getattr(block, name), nn.Linear)]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="soprano-quantize") as pool:  # kernels release the GIL
        layers = list(pool.map(lambda item: DynamicInt8Linear(item[2].weight, item[2].bias, own_kernel=True),
                                replaced))
    for (block, name, _), layer in zip(replaced, layers):
        setattr(block, name, layer)
    head = decoder.head
    if int8_kernel.available() and isinstance(head.out, nn.Linear):
        replaced.append((head, "out", head.out))
        head.out = PackedLinear(head.out.weight, head.out.bias)
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
