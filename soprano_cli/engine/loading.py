"""Loading a checkpoint into a ready LM and decoder, top to bottom.

`load_model` checks the files, then builds the LM (`build_torch_lm`, or another backend) and the
decoder. `build_torch_lm` settles the precision: `auto` runs the int8 probe once per checkpoint
and machine (its outcome cached in a small JSON file) and builds what it chose. `build_lm`
fills the LM tensor by tensor from the checkpoint, quantizing on two threads as it reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from soprano_cli.engine import checkpoint
from soprano_cli.engine.checkpoint import LMConfig
from soprano_cli.engine.config import EngineConfig
from soprano_cli.engine.decoder import SopranoDecoder, decode_frames
from soprano_cli.engine.devices import select_backend, select_dtype
from soprano_cli.engine.generate import STATIC_CACHE_LEN
from soprano_cli.engine.lm import Qwen3LM
from soprano_cli.engine.memory import release_free_memory
from soprano_cli.engine.quantize import (decoder_int8_supported, int8_linear, int8_supported, quantize_decoder,
                                         quantize_int8, restore_decoder)
from soprano_cli.errors import ModelLoadError

log = logging.getLogger(__name__)

# A mode must keep every probed hidden state this close (cosine) to float32 to be chosen by `auto`.
MIN_COSINE = 0.999
# The int8 decoder must keep this signal-to-noise ratio against the float32 decoder on the same frames.
MIN_DECODER_SNR_DB = 40.0
PROBE_TEXT = "[STOP][TEXT]the quick brown fox jumps over the lazy dog, then naps until noon.[START]"


@dataclass
class LoadedModel:
    """What `load_model` hands the engine."""

    lm: object  # a Qwen3LM, or a backend's LM with the same prefill/decode interface
    decoder: SopranoDecoder
    tokenizer: object
    folder: Path
    backend: str
    dtype: str  # the LM's weight precision (what `auto` resolved to)


def load_model(config: EngineConfig, device: torch.device) -> LoadedModel:
    """Resolve `config.model`, check every file before allocating, then build the LM and decoder on
    `device` in the precision `config.dtype` asks for (or `auto` chooses)."""
    backend = select_backend(config.backend, device)
    dtype = select_dtype(config.dtype, device)
    started = time.perf_counter()
    folder = checkpoint.resolve_model(config.model, download=config.download)
    lm_config = checkpoint.read_lm_config(folder)
    tokenizer = checkpoint.load_tokenizer(folder, lm_config)
    checkpoint.load_lm_weights(folder, lm_config)  # header and shapes only: fail before allocating
    if backend == "transformers":
        from soprano_cli.engine.backends.transformers import TransformersLM

        lm = TransformersLM.load(folder, lm_config, device=device, dtype=dtype)
    if backend == "lmdeploy":
        from soprano_cli.engine.backends.lmdeploy import LMDeployLM, turbomind_dtype

        dtype = turbomind_dtype(dtype)
        lm = LMDeployLM.load(folder, lm_config, device=device, dtype=dtype, cache_size_mb=config.cache_size_mb,
                             max_batch=config.max_batch)
    decoder = SopranoDecoder.from_state_dict(checkpoint.load_decoder_weights(folder)).to(device)
    if backend == "lmdeploy":
        decoder.compute_dtype = torch.bfloat16  # as the torch backend's bfloat16 mode on CUDA
    if backend == "torch":
        lm, dtype = build_torch_lm(folder, lm_config, device, dtype, tokenizer, decoder)
        if device.type == "cuda":
            from soprano_cli.engine.cuda_graphs import CudaGraphRunner

            if dtype != "float32":  # tensor cores; float32 stays the exact mode
                decoder.compute_dtype = torch.bfloat16
            lm.cuda_graphs = CudaGraphRunner(lm, slots=config.max_batch, max_len=STATIC_CACHE_LEN)
    release_free_memory()
    log.info("loaded %s (%s, %s, LM %s) in %.2f s", folder, backend, device, dtype, time.perf_counter() - started)
    return LoadedModel(lm=lm, decoder=decoder, tokenizer=tokenizer, folder=folder, backend=backend, dtype=dtype)


def build_torch_lm(folder: Path, lm_config, device: torch.device, mode: str, tokenizer, decoder: SopranoDecoder):
    """Our LM in the requested precision, with the decoder's precision to match (set in place).

    int8 runs the decoder's ConvNeXt layers in int8 too, where fbgemm serves them. `auto` keeps
    each int8 part only if it passes its quality probe: hidden-state and logit cosine for the LM, audio SNR
    for the decoder, both against float32 over a fixed prompt. The probe runs once per checkpoint
    and machine; its outcome is cached, so later loads build int8 directly from the file.
    """

    def build(precision: str):
        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        return build_lm(lm_config, checkpoint.load_lm_weights(folder), device=device, dtype=dtype,
                        int8=precision == "int8"), precision

    if mode != "auto":
        if mode == "int8" and decoder_int8_supported(device):
            quantize_decoder(decoder)
        return build(mode)
    if not int8_supported(device):  # a CPU without a fast int8 kernel
        return build("float32")
    cached = cached_choice(folder)
    if cached is not None:
        if cached[1] == "int8":
            quantize_decoder(decoder)
        return build(cached[0])
    lm, _ = build("float32")
    probe = probe_ids(tokenizer, device)
    reference = hidden_states(lm, probe)
    decoder_choice, snr = "float32", None
    if decoder_int8_supported(device):
        reference_audio = decode_frames(decoder, reference)
        replaced = quantize_decoder(decoder)
        snr = snr_db(reference_audio, decode_frames(decoder, reference))
        if snr >= MIN_DECODER_SNR_DB:
            decoder_choice = "int8"
        else:
            restore_decoder(replaced)
    with torch.inference_mode():
        reference_logits = lm.lm_head(reference)
        lm = quantize_int8(lm)
        hidden = hidden_states(lm, probe)
        # The frames (hidden states) and the token choice (logits) must both hold.
        cosine = min(float(cosine_per_position(reference, hidden).min()),
                     float(cosine_per_position(reference_logits, lm.lm_head(hidden)).min()))
    choice = "int8" if cosine >= MIN_COSINE else "float32"
    remember_choice(folder, choice, cosine, decoder_choice, snr)
    log.info("dtype auto: LM %s (int8 probe cosine %.5f, needs %.3f), decoder %s (int8 SNR %s dB, needs %.0f)",
             choice, cosine, MIN_COSINE, decoder_choice, "n/a" if snr is None else f"{snr:.1f}",
             MIN_DECODER_SNR_DB)
    return (lm, "int8") if choice == "int8" else build("float32")


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
             int8: bool = False) -> Qwen3LM:
    """Build the LM on the meta device, then fill it tensor by tensor from the checkpoint.

    `weights` maps checkpoint keys to tensors (a dict, or a lazy `checkpoint.LMWeights`); each is
    converted to `dtype` (or quantized, with `int8`) as it is read, so peak memory stays near the
    final model's size.
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
        if int8 and (name == "lm_head.weight" or (name.endswith("_proj.weight") and name.startswith("model.layers."))):
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
    return model.eval()


class _Quantizer:
    """Quantizes layers on two threads while the next tensors are read (the kernels release the
    GIL), with few float tensors in flight so peak memory stays near the int8 model's size."""

    IN_FLIGHT = 6  # with 3 in flight the workers wait on reads
    # Freed float tensors pile up in the worker threads' heaps: trimming every few layers kept
    # the load's peak at 425 MB instead of 550 MB (the published sizes), for about 0.05 s.
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


# -- the precision probe --------------------------------------------------------------------------

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
    return lm.run_prompts(ids.unsqueeze(0), positions, cache, slot, None)[0].float()


def cosine_per_position(reference: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(reference.float(), candidate.float(), dim=-1)


def probe_ids(tokenizer, device) -> torch.Tensor:
    """Token ids of the fixed probe prompt."""
    return torch.tensor(tokenizer.encode(PROBE_TEXT).ids, device=device)


# -- its cache file -------------------------------------------------------------------------------

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
