"""Loading a checkpoint into a ready LM and decoder, top to bottom.

`load_model` checks the files, then builds the LM (`build_torch_lm`, or another backend) and the
decoder. `build_torch_lm` settles the precision: `auto` runs the audio probe once per checkpoint
and machine (`precision_probe.py`, its outcome cached) and builds what it chose; `build.py`
fills the LM tensor by tensor from the checkpoint, quantizing on two threads as it reads.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from soprano_cli.engine import checkpoint, precision_probe
from soprano_cli.engine.config import EngineConfig
from soprano_cli.engine.decoder import SopranoDecoder
from soprano_cli.engine.devices import select_backend, select_dtype
from soprano_cli.engine.generate import STATIC_CACHE_LEN
from soprano_cli.engine.memory import release_free_memory, temporaries_returned_at_once

log = logging.getLogger(__name__)


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
    with temporaries_returned_at_once():
        return _load_model(config, device)


def _load_model(config: EngineConfig, device: torch.device) -> LoadedModel:
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

    int8 runs the decoder's ConvNeXt layers in int8 too, where fbgemm serves them, and smooths
    both first (`smoothing.py`). `auto` probes each candidate's audio against float32 once per
    checkpoint and machine (`precision_probe.py`) and keeps the fastest that passes.
    """
    return precision_probe.build_for_mode(folder, lm_config, device, mode, tokenizer, decoder)
