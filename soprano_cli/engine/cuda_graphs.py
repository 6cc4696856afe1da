"""CUDA graphs for the decode step: captured once per batch-size bucket, replayed every step.

On a GPU one token's decode step is a few hundred small kernels whose launch overhead outweighs
their work. `Qwen3LM.decode_static` computes the step with fixed shapes and no host
synchronization (attention over the whole preallocated cache, masked), so it can be captured
once and replayed with new inputs copied into the captured buffers.

Graphs hold the addresses of the KV cache they were captured with, so the runner owns one shared
cache and lends it to one batch generator at a time; a generator that finds it taken allocates
its own and decodes eagerly (the LM's own step). Batches are padded up to a few bucket sizes (the padding rows write
into free slots only), so a handful of graphs serves every batch size. A prompt that arrives
alone (a stream's first sentence) is prefilled through a graph too, padded to a length bucket.
"""

from __future__ import annotations

import logging
import threading
import weakref

import torch

log = logging.getLogger(__name__)

# Prompt lengths a lone prompt's prefill is padded up to (longer ones prefill eagerly). A stream's
# first sentence usually arrives alone, and eager prefill is launch-bound on a GPU.
PREFILL_BUCKETS = (32, 64, 128, 256)
SPAN = 256  # decode attention covers a multiple of this many cache positions


def batch_buckets(slots: int) -> list[int]:
    """Batch sizes that get a graph: powers of two below `slots`, then `slots` itself."""
    buckets = [1]
    while buckets[-1] * 2 < slots:
        buckets.append(buckets[-1] * 2)
    return buckets + ([slots] if slots > 1 else [])


class CudaGraphRunner:
    """Runs `lm.decode_static` through captured graphs on the shared cache it lends out."""

    def __init__(self, lm, slots: int, max_len: int = 1024):
        self.lm = lm
        self.slots = slots
        self.max_len = max_len
        self.buckets = batch_buckets(slots)
        self.cache = None  # allocated on first lease
        self.graphs: dict[tuple[int, int], tuple] = {}  # (batch bucket, span) -> (graph, inputs, outputs)
        self.prefill_graphs: dict[int, tuple] = {}  # prompt-length bucket -> (graph, inputs, outputs)
        self.failed = False  # a capture failed: stay eager from then on
        self._holder: weakref.ref | None = None
        self._lock = threading.Lock()

    # -- lending the shared cache ---------------------------------------------------------------

    def lease(self, owner, slots: int, max_len: int):
        """The shared cache for `owner`'s next batch, or None while another generator holds it."""
        with self._lock:
            holder = self._holder() if self._holder is not None else None
            if (holder is not None and holder is not owner) or slots > self.slots:
                return None
            if self.cache is None or self.cache.max_len < max_len:
                self._allocate(max(max_len, self.max_len))
            self._holder = weakref.ref(owner)
            return self.cache

    def release(self, owner) -> None:
        with self._lock:
            if self._holder is not None and self._holder() is owner:
                self._holder = None

    def _allocate(self, max_len: int) -> None:
        self.max_len = -(-max_len // 128) * 128
        self.cache = None  # free the old one first
        self.graphs.clear()  # they hold the old cache's addresses
        self.prefill_graphs.clear()
        self.cache = self.lm.new_cache(self.slots, self.max_len)

    def capture_all(self) -> None:
        """Capture every bucket now, so no request pays for a capture (a server's warm-up)."""
        if self.failed or self.lease(self, self.slots, self.max_len) is None:
            return
        try:
            device = self.cache.k.device
            for bucket in self.buckets:
                for span in range(SPAN, self.cache.max_len + SPAN, SPAN):
                    if (bucket, min(span, self.cache.max_len)) not in self.graphs and not self.failed:
                        zeros = torch.zeros(bucket, dtype=torch.long, device=device)
                        self._replay(zeros, zeros.clone(), span)
            for length in PREFILL_BUCKETS:
                if length not in self.prefill_graphs and not self.failed:
                    self.prefill(torch.zeros(length, dtype=torch.long, device=device), 0, self.cache)
        finally:
            self.release(self)

    # -- decoding -------------------------------------------------------------------------------

    def __call__(self, ids: torch.Tensor, lengths: torch.Tensor, cache,
                 reach: int | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One decode step through a graph (None: not graphed, run it eagerly): only on the shared cache."""
        if cache is not self.cache or self.failed or ids.shape[0] > self.slots:
            return None
        return self._replay(ids, lengths, reach or int(lengths.max()) + 1)

    def _replay(self, ids: torch.Tensor, lengths: torch.Tensor, reach: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        B = ids.shape[0]
        bucket = next(b for b in self.buckets if b >= B)
        # Attention covers a multiple of SPAN positions, not the whole cache: its cost follows the longest sentence.
        span = min(-(-reach // SPAN) * SPAN, self.cache.max_len)
        entry = self.graphs.get((bucket, span))
        if entry is None:
            # Padding rows (id 0 at position 0) write only into slots B.., which are free.
            static_ids = torch.zeros(bucket, dtype=ids.dtype, device=ids.device)
            static_lengths = torch.zeros(bucket, dtype=lengths.dtype, device=lengths.device)
            static_ids[:B], static_lengths[:B] = ids, lengths
            entry = self._try_capture(lambda: self.lm.decode_static(static_ids, static_lengths, self.cache, span),
                                      static_ids, static_lengths)
            if entry is None:
                return None
            self.graphs[(bucket, span)] = entry
        graph, (static_ids, static_lengths), (hidden, logits) = entry
        if B < bucket:
            static_ids.zero_()
            static_lengths.zero_()
        static_ids[:B].copy_(ids)
        static_lengths[:B].copy_(lengths)
        graph.replay()
        return hidden[:B].clone(), logits[:B].clone()

    def prefill(self, prompt: torch.Tensor, slot: int, cache) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One prompt into `slot` through a graph of its padded length (None: not graphed, run it eagerly).

        Padding tokens come after the prompt, so causal attention keeps them out of its positions;
        the keys and values they write lie past the prompt, where decoding writes before it reads.
        """
        T = prompt.shape[0]
        bucket = next((b for b in PREFILL_BUCKETS if b >= T), None)
        if cache is not self.cache or self.failed or bucket is None or bucket > cache.max_len:
            return None
        entry = self.prefill_graphs.get(bucket)
        if entry is None:
            static_ids = torch.zeros(1, bucket, dtype=torch.long, device=prompt.device)
            static_ids[0, :T] = prompt
            static_slot = torch.full((1,), slot, dtype=torch.long, device=prompt.device)
            static_last = torch.full((1,), T - 1, dtype=torch.long, device=prompt.device)
            entry = self._try_capture(lambda: self.lm.prefill_static(static_ids, static_slot, static_last, self.cache),
                                      static_ids, static_slot, static_last)
            if entry is None:
                return None
            self.prefill_graphs[bucket] = entry
        graph, (static_ids, static_slot, static_last), (hidden, logits) = entry
        static_ids.zero_()
        static_ids[0, :T].copy_(prompt)
        static_slot.fill_(slot)
        static_last.fill_(T - 1)
        graph.replay()
        return hidden.clone(), logits.clone()

    def _try_capture(self, step, *inputs):
        try:
            graph, outputs = self._capture(step)
        except Exception as error:  # a driver or kernel without graph support: eager still works
            log.warning("CUDA graph capture failed (%s); running without graphs", error)
            self.failed = True
            self.graphs.clear()
            self.prefill_graphs.clear()
            return None
        return graph, inputs, outputs

    def _capture(self, step):
        """Capture `step()`, which reads and writes only fixed buffers: (graph, its outputs)."""
        # Warm up on a side stream first (lazy cuBLAS and allocator set-up cannot be captured).
        # These runs compute this very step, so the keys and values they write are the right ones.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = step()
        return graph, outputs
