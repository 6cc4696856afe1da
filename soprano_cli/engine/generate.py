"""Continuous batching over the LM: sentences join after their prefill and leave at EOS.

`BatchGenerator.step()` admits waiting sentences into free cache slots, runs one decode step for
every active sentence and reports each new frame. A sentence's tokens and frames do not depend
on what else shares its batch (per-sentence sampling generators, per-slot lengths and masks).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import torch

from soprano_cli.engine.sampling import SamplingParams, choose_token, sequence_generator

log = logging.getLogger(__name__)

# The reference's hallucination rule: consecutive frames whose summed absolute difference stays
# under SIMILAR_FRAME_DISTANCE raise a counter (others lower it); above REPEAT_LIMIT it is a loop.
SIMILAR_FRAME_DISTANCE = 300.0
REPEAT_LIMIT = 16
# KV cache positions allocated up front on CUDA: a long prompt plus the 512-token cap.
STATIC_CACHE_LEN = 1024


@dataclass
class RepetitionGuard:
    """Tracks near-identical consecutive frames for one sentence."""

    count: int = 0
    flagged: bool = False
    _previous: torch.Tensor | None = None

    def update(self, frame: torch.Tensor) -> bool:
        if self._previous is not None:
            distance = float((frame - self._previous).abs().sum())
            self.count = self.count + 1 if distance < SIMILAR_FRAME_DISTANCE else max(self.count - 1, 0)
            self.flagged = self.flagged or self.count > REPEAT_LIMIT
        self._previous = frame
        return self.flagged


@dataclass
class Sequence:
    """One sentence being generated."""

    key: object  # the caller's handle for this sentence
    prompt: list[int]
    params: SamplingParams
    index: int = 0  # position in its request; seeds its sampler
    attempt: int = 0
    stop_on_hallucination: bool = False
    # Filled while generating.
    tokens: list[int] = field(default_factory=list)
    frames: list[torch.Tensor] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" (EOS), "length" (token cap), "hallucination" (stopped early)
    guard: RepetitionGuard = field(default_factory=RepetitionGuard)
    slot: int = -1
    length: int = 0  # positions in the KV cache
    _generator: torch.Generator | None = None
    _seen: torch.Tensor | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def hallucinated(self) -> bool:
        return self.guard.flagged


@dataclass
class FrameEvent:
    """What one step did to one sentence: a new frame, and/or its end."""

    sequence: Sequence
    frame: torch.Tensor | None
    finished: bool


class BatchGenerator:
    """Owns the KV cache and schedules sentences through the LM."""

    def __init__(self, lm, *, max_batch: int = 16, device="cpu"):
        self.lm = lm
        self.config = lm.config
        self.max_batch = max_batch
        self.device = torch.device(device)
        self.waiting: deque[Sequence] = deque()
        self.active: list[Sequence] = []
        self.cache = None

    def add(self, sequence: Sequence) -> None:
        self.waiting.append(sequence)

    def cancel(self, key: object) -> None:
        """Drop a sentence, waiting or active, without reporting it."""
        self.waiting = deque(s for s in self.waiting if s.key is not key)
        for sequence in self.active:
            if sequence.key is key:
                sequence.finish_reason = "cancelled"
        self._compact()

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.active

    def _ensure_cache(self, need_len: int, need_slots: int) -> None:
        """Grow the cache to `need_len` positions and enough slots (never beyond max_batch; never shrinks)."""
        need_slots = min(self.max_batch, need_slots)
        if self.device.type == "cuda":
            # Allocated once at full size: captured CUDA graphs hold the cache's addresses.
            need_slots, need_len = self.max_batch, max(need_len, STATIC_CACHE_LEN)
        if self.cache is not None and self.cache.max_len >= need_len and self.cache.slots >= need_slots:
            return
        # Round up so slightly longer prompts or one more sentence do not reallocate every time.
        max_len = -(-max(need_len, 256, self.cache.max_len if self.cache else 0) // 128) * 128
        slots = max(need_slots, self.cache.slots if self.cache else 0)
        new = self.lm.new_cache(slots, max_len)
        if self.cache is not None:
            for sequence in self.active:
                new.copy_slot_from(self.cache, sequence.slot, sequence.length)
        self.cache = new

    def _record(self, sequence: Sequence, hidden: torch.Tensor, logits: torch.Tensor,
                events: list[FrameEvent]) -> None:
        """Choose the next token from the output at the sequence's last position."""
        token = choose_token(logits, sequence._seen, sequence.params, sequence._generator)
        if token == self.config.eos_token_id:
            sequence.finish_reason = "stop"
            events.append(FrameEvent(sequence, None, True))
            return
        # The hidden state that predicted this token is its frame.
        frame = hidden.float()
        sequence.tokens.append(token)
        sequence.frames.append(frame)
        sequence._seen[token] = True
        if sequence.guard.update(frame) and sequence.stop_on_hallucination:
            sequence.finish_reason = "hallucination"
        elif len(sequence.tokens) >= sequence.params.max_new_tokens:
            sequence.finish_reason = "length"
        events.append(FrameEvent(sequence, frame, sequence.finished))

    def _admit(self, events: list[FrameEvent]) -> None:
        """Prefill as many waiting sentences as there are free slots, in one batched pass."""
        newcomers: list[Sequence] = []
        while self.waiting and len(self.active) + len(newcomers) < self.max_batch:
            newcomers.append(self.waiting.popleft())
        if not newcomers:
            return
        self._ensure_cache(max(len(s.prompt) + s.params.max_new_tokens + 1 for s in newcomers),
                           len(self.active) + len(newcomers) + len(self.waiting))
        prompts = []
        for offset, sequence in enumerate(newcomers):
            sequence.slot = len(self.active) + offset
            sequence._generator = sequence_generator(sequence.params, sequence.index, sequence.attempt)
            sequence._seen = torch.zeros(self.config.vocab_size, dtype=torch.bool)
            prompt = torch.tensor(sequence.prompt, dtype=torch.long)
            sequence._seen[prompt] = True
            sequence.length = len(sequence.prompt)
            prompts.append(prompt.to(self.device))
        hidden, logits = self.lm.prefill(prompts, [s.slot for s in newcomers], self.cache)
        hidden, logits = hidden.cpu(), logits.cpu()
        for row, sequence in enumerate(newcomers):
            self._record(sequence, hidden[row], logits[row], events)
        # A sentence may end at its first token; compaction closes the gap it leaves.
        self.active.extend(newcomers)
        self._compact()

    def _compact(self) -> None:
        """Drop finished sentences and keep the live ones in slots 0..B-1."""
        live = [s for s in self.active if not s.finished]
        for slot, sequence in enumerate(live):
            if sequence.slot != slot:
                self.cache.move(sequence.slot, slot, sequence.length)
                sequence.slot = slot
        self.active = live

    def step(self) -> list[FrameEvent]:
        """Admit what fits, then decode one token for every active sentence."""
        events: list[FrameEvent] = []
        self._admit(events)
        if not self.active:
            return events
        ids = torch.tensor([s.tokens[-1] for s in self.active], dtype=torch.long, device=self.device)
        lengths = torch.tensor([s.length for s in self.active], dtype=torch.long, device=self.device)
        hidden, logits = self.lm.decode(ids, lengths, self.cache)
        hidden, logits = hidden.cpu(), logits.cpu()
        for row, sequence in enumerate(self.active):
            sequence.length += 1
            self._record(sequence, hidden[row], logits[row], events)
        self._compact()
        return events
