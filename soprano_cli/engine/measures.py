"""How close a reduced precision is to float32: audio SNR, hidden states and their cosine.

A leaf: the probe, smoothing's calibration, tests and benchmarks all measure with these.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def snr_db(reference, candidate) -> float:
    """Signal-to-noise ratio of `candidate` against `reference` (arrays), in dB."""
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
