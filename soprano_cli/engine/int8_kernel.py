"""soprano's own int8 kernel for the LM and the decoder on x86 CPUs (kernels/int8_rows.cpp).

A decode step multiplies one row, or a few, by every weight of the LM: its speed is how fast
the weights stream from memory. fbgemm packs weights for batches and reads them at about half
the memory's speed at one row; this kernel reads them front to back at memory speed. It is built
for the CPU's instruction set: AVX512-VNNI, where its products are fbgemm's exactly (the same
8-bit inputs, integer sums and float scaling), or AVX2 (most AMD CPUs, Intel's without AVX-512),
where fbgemm rounds the inputs to 7 bits (its 16-bit sums would overflow on 8) and this kernel
keeps all 8: its products are the exact integer ones, computed here in float64. `available()`
checks the kernel against fbgemm or that before it is used. Its library also fuses what stands around each
product (in the decode step, the RMSNorm or residual of each int8 layer, the MLP's activation,
each block's attention; in the decoder, each whole layer with its GELU or gamma and residual);
those float steps round in their own order, so the audio differs from fbgemm's path by float
rounding, and every row is still computed alone (batch invariance holds). And it multiplies by
float weights in float32 (`float_product`): the LM blocks `auto` keeps out of int8 (float16),
and the int8 decoder's float32 head.

The kernel is C++ compiled on first use with the machine's C++ compiler (against the installed
PyTorch's headers) and kept in the kernel cache, keyed by source, PyTorch and compiler. Where
anything is missing (no compiler, neither instruction set, SOPRANO_INT8_KERNEL=0, a failed build or
check) the int8 layers stay on fbgemm; `soprano doctor` says which and why.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from soprano_cli.engine.cache_dir import soprano_cache_dir
from soprano_cli.engine.cpu import cpu_has_flag
from soprano_cli.engine.int8_weights import fbgemm_pack, fbgemm_rows, quantize_weight

log = logging.getLogger(__name__)

INPUT_ALIGNMENT = 16  # in_features must be a multiple of this
HEAD_ALIGNMENT = 32  # attend's head_dim must be a multiple of this (the rotation's halves in whole vectors)
_SOURCE = "int8_rows.cpp"
# -ffp-contract=off: a multiply and an add fused into one instruction in some of the kernel's
# variants (one per rows-at-once count) and not in others would make a row's result depend on
# how many rows share the call, and so a sentence's audio on its batch.
_FLAGS = ("-O3", "-std=c++20", "-shared", "-fPIC", "-fopenmp", "-w", "-ffp-contract=off")


@dataclass(frozen=True)
class InstructionSet:
    """One build of the kernel: its name, the /proc/cpuinfo flags it needs, its compiler flags,
    the output channels per packed block (the C++ kBlock) and the inputs' 8-bit zero point."""

    name: str
    cpu_flags: tuple[str, ...]
    compiler_flags: tuple[str, ...]
    block: int
    zero_point: int


# The first this CPU has is built.
INSTRUCTION_SETS = (
    InstructionSet("AVX512-VNNI", ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "fma"),
                   ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mfma"), 64, 128),
    InstructionSet("AVX2", ("avx2", "fma", "f16c"), ("-mavx2", "-mfma", "-mf16c"), 32, 0),
)
_BUILD_SECONDS = 600

# The schema lives here, not in the C++: TorchScript compiles calls to the op (in the decode step)
# whether or not its kernel could be built, and a call is only made where it was.
_LIBRARY = torch.library.Library("soprano", "DEF")
_LIBRARY.define("int8_rows(Tensor rows, Tensor weight, Tensor offsets, Tensor multipliers, float input_scale)"
                " -> Tensor")
_LIBRARY.define("int8_linear(Tensor x, Tensor weight, Tensor offsets, Tensor multipliers, Tensor? bias, "
                "bool gelu, Tensor? column_scales, Tensor? residual, float input_scale, bool shifted=False) -> Tensor")
_LIBRARY.define("int8_normed(Tensor x, Tensor norm_weight, Tensor eps, Tensor weight, Tensor offsets, "
                "Tensor multipliers, float input_scale) -> Tensor")
_LIBRARY.define("int8_added(Tensor x, Tensor residual, Tensor weight, Tensor offsets, Tensor multipliers, "
                "float input_scale) -> Tensor")
_LIBRARY.define("int8_gated_added(Tensor gate_up, Tensor residual, Tensor weight, Tensor offsets, "
                "Tensor multipliers, float input_scale) -> Tensor")
_LIBRARY.define("float_rows(Tensor rows, Tensor weight) -> Tensor")
_LIBRARY.define("attend(Tensor qkv, Tensor qk_norm, Tensor qk_eps, Tensor cos_sin, Tensor(a!) keys, "
                "Tensor(b!) values, int layer, Tensor positions, int heads, int kv_heads, Tensor? slots=None) -> Tensor")


def kernel_cache_dir() -> Path:
    """Where built kernels are kept: $SOPRANO_KERNEL_CACHE, else <soprano cache>/kernels."""
    chosen = os.environ.get("SOPRANO_KERNEL_CACHE", "").strip()
    return Path(chosen) if chosen else soprano_cache_dir() / "kernels"


def available() -> bool:
    """Whether the LM's int8 layers run on soprano's kernel in this process (decided once)."""
    return _state()[0]


def status() -> str:
    """What the int8 layers run on here and, for fbgemm, why not soprano's kernel (for doctor)."""
    ready, reason = _state()
    if not ready:
        return f"fbgemm ({reason})"
    chosen = instruction_set()
    return (f"soprano {chosen.name} (fbgemm's products, bit for bit)" if chosen.zero_point
            else f"soprano {chosen.name} (8-bit inputs, exact integer sums)")


@functools.cache
def instruction_set() -> InstructionSet | None:
    """The instruction set the kernel is built for on this CPU, or None where it has neither."""
    return next((found for found in INSTRUCTION_SETS if all(cpu_has_flag(flag) for flag in found.cpu_flags)), None)


def block() -> int:
    """Output channels per packed block of this CPU's kernel (asked only where it is available)."""
    return instruction_set().block


_STATE_LOCK = threading.Lock()  # the LM's layers are quantized on two threads: one build


def _state() -> tuple[bool, str]:
    with _STATE_LOCK:
        return _decided_state()


@functools.cache
def _decided_state() -> tuple[bool, str]:
    if os.environ.get("SOPRANO_INT8_KERNEL", "").strip() == "0":
        return False, "SOPRANO_INT8_KERNEL=0"
    chosen = instruction_set()
    if chosen is None:
        return False, "this CPU has neither AVX512-VNNI nor AVX2 with FMA and F16C"
    if chosen.zero_point and "fbgemm" not in torch.backends.quantized.supported_engines:
        return False, "this PyTorch has no fbgemm to check the kernel against"
    try:
        library = _built_library()
        torch.ops.load_library(str(library))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        log.info("soprano's int8 kernel is unavailable (%s); int8 layers run on fbgemm", reason)
        return False, reason
    mismatch = _differs_from_reference(chosen)
    if mismatch:
        log.warning("soprano's int8 kernel differs from its reference (%s); int8 layers run on fbgemm", mismatch)
        return False, f"its results differ from {'fbgemm' if chosen.zero_point else 'the exact integer product'}: {mismatch}"
    return True, ""


def _compiler() -> str | None:
    chosen = os.environ.get("CXX", "").strip()
    return shutil.which(chosen) if chosen else (shutil.which("c++") or shutil.which("g++"))


def _source() -> bytes:
    return resources.files("soprano_cli.engine").joinpath("kernels", _SOURCE).read_bytes()


@functools.cache
def source_digest() -> str:
    """A short hash of the kernel's source: a new version's speed (and rounding) is its own."""
    return hashlib.sha256(_source()).hexdigest()[:12]


def _built_library() -> Path:
    """The compiled kernel: from the cache, or built into it now (atomically: builds may race)."""
    from torch.utils import cpp_extension

    compiler = _compiler()
    if compiler is None:
        raise OSError("no C++ compiler (install g++ to build it)")
    source = _source()
    flags = (*_FLAGS, *instruction_set().compiler_flags)
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    includes = [flag for path in cpp_extension.include_paths() for flag in ("-I", path)]
    libraries = [flag for path in cpp_extension.library_paths() for flag in ("-L", path, f"-Wl,-rpath,{path}")]
    key = hashlib.sha256(b"\0".join([source, torch.__version__.encode(), compiler.encode(),
                                     " ".join([*flags, abi]).encode()])).hexdigest()[:16]
    folder = kernel_cache_dir()
    target = folder / f"int8_rows-{key}.so"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    log.info("building soprano's int8 kernel into %s (once per PyTorch and compiler)", folder)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as scratch:
        source_file = Path(scratch) / _SOURCE
        source_file.write_bytes(source)
        built = Path(scratch) / target.name
        command = [compiler, *flags, abi, *includes, str(source_file), "-o", str(built), *libraries,
                   "-lc10", "-ltorch_cpu"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=_BUILD_SECONDS, check=False)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()
            raise OSError(f"the build failed: {lines[0].strip() if lines else 'exit ' + str(result.returncode)}")
        os.replace(built, target)
    return target


# -- the weights, packed -----------------------------------------------------------------------------

def supports(in_features: int) -> bool:
    return in_features % INPUT_ALIGNMENT == 0


def pack(integers: Tensor, scales: Tensor, input_scale: float) -> list[Tensor]:
    """An int8 weight (out, in) with one float32 scale per row -> the kernel's three tensors.

    The weight as blocks of `block()` rows by 4 inputs (out/block, in/4, block, 4), padded with
    zero rows; each row's offset, 128 x its sum (VNNI's inputs are unsigned around 128, AVX2's
    shifted ones from their row's lowest value: the sums take it back out); and each row's
    multiplier, input scale x row scale in float32, as fbgemm computes it.
    """
    out_features, in_features = integers.shape
    size = block()
    blocks = -(-out_features // size)
    padded = integers
    if out_features % size:  # (no copy where the rows fill the blocks: a load's peak memory counts)
        padded = torch.zeros(blocks * size, in_features, dtype=torch.int8)
        padded[:out_features] = integers
    weight = padded.view(blocks, size, in_features // 4, 4).permute(0, 2, 1, 3).contiguous()
    offsets = integers.sum(1, dtype=torch.int32).mul_(128)
    multipliers = torch.tensor(input_scale, dtype=torch.float32) * scales.float()
    return [weight, offsets, multipliers]


def supports_half(out_features: int, in_features: int) -> bool:
    """Whether a weight of this shape packs into whole blocks of output channels (`pack_float`)."""
    return out_features % block() == 0 and in_features > 0


def pack_float(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """A float weight (out, in) -> `dtype` (float16 or float32) (ceil(out/block), in, block): each
    block's channels side by side for each input, read front to back by `float_product`; channels
    past `out` are zeros (the product's columns past `out` are then 0)."""
    out_features, in_features = weight.shape
    size = block()
    padded = weight.new_zeros(-(-out_features // size) * size, in_features)
    padded[:out_features] = weight.detach()
    return padded.to(dtype).view(-1, size, in_features).transpose(1, 2).contiguous()


def float_product(rows: Tensor, packed: Tensor) -> Tensor:
    """float32 rows (M, in) times a `pack_float` weight -> (M, padded out), summed in float32 in
    input order (each row alike in any batch)."""
    return _op("float_rows")(rows, packed)


def rows_product(rows: Tensor, parts: list[Tensor], input_scale: float) -> Tensor:
    """float32 rows (M, in) already in [-1, 1] times a packed weight -> (M, out): fbgemm's bits
    (VNNI), or the exact integer product (AVX2)."""
    return _op("int8_rows")(rows, parts[0], parts[1], parts[2], input_scale)


def linear_product(x: Tensor, parts: list[Tensor], bias: Tensor | None, input_scale: float, *, gelu: bool = False,
                   column_scales: Tensor | None = None, residual: Tensor | None = None, shifted: bool = False) -> Tensor:
    """A whole `DynamicInt8Linear` on float32 rows (M, in) in one call: row scaling, product, bias;
    then, as asked, GELU, times `column_scales` (out,), plus `residual` (M, out). `shifted` (rows
    that reach little below zero, such as GELU's outputs): with AVX2, each row is quantized over
    its own range into 0..128, as precise there as symmetric 8 bits and a third fewer operations
    in the product; VNNI's products ignore it."""
    return _op("int8_linear")(x, parts[0], parts[1], parts[2], bias, gelu, column_scales, residual, input_scale,
                              shifted)


def normed_product(x: Tensor, norm_weight: Tensor, eps: Tensor, parts: list[Tensor], input_scale: float) -> Tensor:
    """`quantize.int8_normed` in one call: the norm, the row scaling and the product fused."""
    return _op("int8_normed")(x, norm_weight, eps, parts[0], parts[1], parts[2], input_scale)


def added_product(x: Tensor, residual: Tensor, parts: list[Tensor], input_scale: float) -> Tensor:
    """`quantize.int8_added` in one call."""
    return _op("int8_added")(x, residual, parts[0], parts[1], parts[2], input_scale)


def gated_added_product(gate_up: Tensor, residual: Tensor, parts: list[Tensor], input_scale: float) -> Tensor:
    """`quantize.int8_gated_added` in one call: the MLP's silu(gate) * up fused into the product."""
    return _op("int8_gated_added")(gate_up, residual, parts[0], parts[1], parts[2], input_scale)


@functools.cache
def _op(name: str):
    """An op as the bare C++ function (torch.ops' Python checks cost microseconds a call)."""
    overload = getattr(torch.ops.soprano, name).default
    return getattr(overload, "_op", overload)


def exact_rows_product(rows: Tensor, integers: Tensor, scales: Tensor, input_scale: float) -> Tensor:
    """What the AVX2 kernel computes for rows (M, in) in [-1, 1] and an int8 weight (out, in) with
    row scales: each input rounded to the nearest 8-bit step (ties to even), the integer sums
    (exact in float64), each sum as float32 times input scale x row scale."""
    steps = (rows.float() * (1 / torch.tensor(input_scale, dtype=torch.float32))).round().clamp(-128, 127)
    sums = steps.double() @ integers.double().t()
    return sums.float() * (torch.tensor(input_scale, dtype=torch.float32) * scales.float())


def _differs_from_reference(chosen: InstructionSet) -> str:
    """'' where the kernel gives its reference's exact outputs on awkward shapes and values (fbgemm's
    with VNNI, `exact_rows_product` with AVX2), else what differs."""
    generator = torch.Generator().manual_seed(0)
    input_scale = 1 / 127
    for out_features, in_features in ((64, 64), (200, 512), (8, 2304)):
        weight = torch.randn(out_features, in_features, generator=generator) * 0.05
        integers, scales = quantize_weight(weight)
        parts = pack(integers, scales, input_scale)
        packed = fbgemm_pack(integers, scales) if chosen.zero_point else None
        for rows in (1, 3, 4, 7):
            x = torch.rand(rows, in_features, generator=generator) * 2 - 1
            # Inputs exactly between two 8-bit steps, where a rounding that differs shows.
            x[0, : in_features // 2] = (torch.randint(-126, 127, (in_features // 2,), generator=generator) + 0.5) / 127
            x[-1, -1] = 1.0
            ours = rows_product(x, parts, input_scale)
            theirs = (fbgemm_rows(x, input_scale, packed) if packed is not None
                      else exact_rows_product(x, integers, scales, input_scale))
            if not torch.equal(ours, theirs):
                worst = (ours - theirs).abs().max().item()
                return f"{out_features}x{in_features} weight, {rows} rows: up to {worst:.3g} apart"
    return ""
