"""The LM through transformers' own Qwen3ForCausalLM: the upstream path, kept as a cross-check.

Each cache slot holds its own transformers cache and decodes alone; it is correct, not fast.
"""

from __future__ import annotations

from pathlib import Path

import torch

from soprano_cli.engine.checkpoint import LMConfig
from soprano_cli.errors import ModelLoadError


class _SlotCaches:
    """One transformers cache per slot, with the KVCache slot operations the generator uses."""

    def __init__(self, slots: int, max_len: int):
        self.entries: list = [None] * slots
        self.max_len = max_len

    @property
    def slots(self) -> int:
        return len(self.entries)

    def move(self, source: int, target: int, length: int) -> None:
        self.entries[target] = self.entries[source]
        self.entries[source] = None

    def copy_slot_from(self, other: "_SlotCaches", slot: int, length: int) -> None:
        self.entries[slot] = other.entries[slot]


class TransformersLM:
    """prefill/decode over `Qwen3ForCausalLM`, one sequence at a time."""

    def __init__(self, model, config: LMConfig, device: torch.device):
        import inspect

        self.model = model
        self.config = config
        self.device = device
        # transformers 5 renamed `past_key_values` to `cache` (the old name is going away).
        self._cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @classmethod
    def load(cls, folder: Path, config: LMConfig, *, device: torch.device, dtype: torch.dtype) -> "TransformersLM":
        import warnings

        from transformers import Qwen3ForCausalLM
        from transformers.utils import logging as hf_logging

        # Keep stderr for our own messages: no weight-loading bars or deprecation chatter.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.nn.modules.module")
        try:
            model = Qwen3ForCausalLM.from_pretrained(str(folder), dtype=dtype).to(device).eval()
        except (OSError, ValueError, RuntimeError) as error:
            first = str(error).strip().splitlines()
            raise ModelLoadError(f"transformers could not load {folder}: {first[0] if first else error}") from None
        return cls(model, config, device)

    def new_cache(self, slots: int, max_len: int) -> _SlotCaches:
        return _SlotCaches(slots, max_len)

    def _forward(self, ids: torch.Tensor, past):
        out = self.model(input_ids=ids.view(1, -1), use_cache=True, output_hidden_states=True,
                         **{self._cache_argument: past})
        # The last entry of hidden_states is after the final norm: the frame the decoder reads.
        return out.hidden_states[-1][0, -1], out.logits[0, -1].float(), out[self._cache_argument]

    @torch.inference_mode()
    def prefill(self, prompts: list[torch.Tensor], slots: list[int], cache: _SlotCaches):
        hiddens, logits = [], []
        for ids, slot in zip(prompts, slots):
            hidden, row_logits, cache.entries[slot] = self._forward(ids, None)
            hiddens.append(hidden)
            logits.append(row_logits)
        return torch.stack(hiddens), torch.stack(logits)

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor, lengths: torch.Tensor, cache: _SlotCaches, reach: int | None = None):
        hiddens, logits = [], []
        for slot in range(ids.shape[0]):
            hidden, row_logits, cache.entries[slot] = self._forward(ids[slot:slot + 1], cache.entries[slot])
            hiddens.append(hidden)
            logits.append(row_logits)
        return torch.stack(hiddens), torch.stack(logits)
