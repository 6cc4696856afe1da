"""CUDA graphs for the decode step: one captured graph per batch size, replayed every step.

On a GPU one token's decode step is a few hundred small kernels whose launch overhead outweighs
their work. `Qwen3LM.decode_static` computes the step with fixed shapes and no host
synchronization (attention over the whole preallocated cache, masked), so it can be captured
once per batch size and replayed with new inputs copied into the captured buffers.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class CudaGraphRunner:
    """Runs `lm.decode_static` through captured graphs, keyed by batch size and cache."""

    def __init__(self, lm):
        self.lm = lm
        self.graphs: dict[tuple[int, int], tuple] = {}
        self.failed = False  # a capture failed: stay eager from then on

    def __call__(self, ids: torch.Tensor, lengths: torch.Tensor, cache) -> tuple[torch.Tensor, torch.Tensor]:
        key = (ids.shape[0], cache.k.data_ptr())
        entry = self.graphs.get(key)
        if entry is None:
            if self.failed:
                return self.lm.decode_static(ids, lengths, cache)
            try:
                entry = self._capture(ids, lengths, cache)
            except Exception as error:  # a driver or kernel without graph support: eager still works
                log.warning("CUDA graph capture failed (%s); decoding without graphs", error)
                self.failed = True
                self.graphs.clear()
                return self.lm.decode_static(ids, lengths, cache)
            # Graphs hold the cache's addresses: those of a replaced (grown) cache are dead.
            self.graphs = {k: v for k, v in self.graphs.items() if k[1] == key[1]}
            self.graphs[key] = entry
        graph, static_ids, static_lengths, hidden, logits = entry
        static_ids.copy_(ids)
        static_lengths.copy_(lengths)
        graph.replay()
        return hidden.clone(), logits.clone()

    def _capture(self, ids, lengths, cache):
        static_ids, static_lengths = ids.clone(), lengths.clone()
        # Warm up on a side stream first (lazy cuBLAS and allocator set-up cannot be captured).
        # These runs compute this very step, so the keys and values they write are the right ones.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.lm.decode_static(static_ids, static_lengths, cache)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            hidden, logits = self.lm.decode_static(static_ids, static_lengths, cache)
        return graph, static_ids, static_lengths, hidden, logits
