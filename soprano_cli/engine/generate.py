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

from soprano_cli.engine.sampling import SamplingParams, penalize, sample_token, sequence_generator

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

    def observe(self, distance: float) -> bool:
        """Count one frame at `distance` (summed absolute difference) from the one before it;
        the generator computes these for a whole batch at once."""
        self.count = self.count + 1 if distance < SIMILAR_FRAME_DISTANCE else max(self.count - 1, 0)
        self.flagged = self.flagged or self.count > REPEAT_LIMIT
        return self.flagged


@dataclass
class Generation:
    """One sentence being generated: its prompt and sampling, then its tokens and frames so far."""

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

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def hallucinated(self) -> bool:
        return self.guard.flagged


@dataclass
class FrameEvent:
    """What one step did to one sentence: a new frame, and/or its end."""

    sequence: Generation
    frame: torch.Tensor | None
    finished: bool


class BatchGenerator:
    """Owns the KV cache and schedules sentences through the LM."""

    def __init__(self, lm, *, max_batch: int = 16, device="cpu"):
        self.lm = lm
        self.config = lm.config
        self.max_batch = max_batch
        self.device = torch.device(device)
        self.waiting: deque[Generation] = deque()
        self.active: list[Generation] = []
        self.cache = None
        # Each slot's repetition penalty at the ids in its prompt or output, 1 elsewhere (see
        # `penalize`), kept beside the logits so a whole batch chooses its tokens in a few operations.
        self.divisors: torch.Tensor | None = None
        # On a GPU, step t+1 is queued before step t's results are handed out (see `step`).
        self.pipelined = self.device.type == "cuda"
        self._inflight: _Step | None = None
        self._previous: tuple[list[Generation], torch.Tensor] | None = None  # last decode step's batch and frames
        # With CUDA graphs the engine's shared cache, whose decode graphs are captured, is leased per batch.
        self._graphs = getattr(lm, "cuda_graphs", None)

    def add(self, sequence: Generation) -> None:
        self.waiting.append(sequence)

    def cancel(self, key: object) -> None:
        """Drop a sentence, waiting or active, without reporting it."""
        self.waiting = deque(s for s in self.waiting if s.key is not key)
        for sequence in self.active:
            if sequence.key is key:
                sequence.finish_reason = "cancelled"
        if self._inflight is None:  # else the step in flight still uses the slots: `step` compacts
            self._compact()
            self._release_if_idle()

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.active

    def _ensure_cache(self, need_len: int, need_slots: int) -> None:
        """Grow the cache to `need_len` positions and enough slots (never beyond max_batch; never shrinks)."""
        need_slots = min(self.max_batch, need_slots)
        if self.device.type == "cuda":
            # Allocated once at full size: captured CUDA graphs hold the cache's addresses.
            need_slots, need_len = self.max_batch, max(need_len, STATIC_CACHE_LEN)
        if self._graphs is not None and not self.active:
            shared = self._graphs.lease(self, need_slots, need_len)
            if shared is not None:
                self._use_cache(shared)
                return
            if self.cache is self._graphs.cache:
                self.cache = None  # released after our last batch; another generator holds it now
        if self.cache is not None and self.cache.max_len >= need_len and self.cache.slots >= need_slots:
            return
        # Round up so slightly longer prompts or one more sentence do not reallocate every time.
        max_len = -(-max(need_len, 256, self.cache.max_len if self.cache else 0) // 128) * 128
        slots = max(need_slots, self.cache.slots if self.cache else 0)
        self._use_cache(self.lm.new_cache(slots, max_len))

    def _use_cache(self, new) -> None:
        """Switch to `new`, carrying over the active sentences' keys, values and seen ids."""
        if self.cache is not None and self.cache is not new:
            for sequence in self.active:
                new.copy_slot_from(self.cache, sequence.slot, sequence.length)
        if self.divisors is None or self.divisors.shape[0] != new.slots:
            divisors = torch.ones(new.slots, self.config.vocab_size, device=self.device)
            for sequence in self.active:
                divisors[sequence.slot] = self.divisors[sequence.slot]
            self.divisors = divisors
        self.cache = new

    def _release_if_idle(self) -> None:
        if self._graphs is not None and self.idle:
            self._graphs.release(self)

    def _launch(self, batch: list[Generation], hidden: torch.Tensor, logits: torch.Tensor,
                lengths: torch.Tensor | None = None) -> "_Step":
        """Queue the token choice for `batch` (rows follow slots) and the copy of what the host needs.

        Frames stay on the LM's device (the decoder runs there). Greedy batches choose on the
        device, and the ids and the guard's distances reach the host in one copy that nobody waits
        for yet, so on a GPU the host goes on while the step runs. Sampling draws from each
        sentence's own CPU generator (its tokens are then reproducible on any device), which waits.
        """
        first = batch[0].slot
        divisors = self.divisors[first:first + len(batch)]
        penalties = {s.params.repetition_penalty for s in batch}
        if len(penalties) == 1:  # elementwise, so exactly what each row alone would get
            scores = penalize(logits, divisors, next(iter(penalties)))
        else:
            scores = torch.stack([penalize(logits[row], divisors[row], s.params.repetition_penalty)
                                  for row, s in enumerate(batch)])
        if all(s.params.temperature == 0 for s in batch):
            ids, tokens = scores.argmax(-1), None
        else:
            scores = scores.cpu()
            tokens = [sample_token(scores[row], s.params, s._generator) for row, s in enumerate(batch)]
            ids = torch.tensor(tokens, device=self.device)
        if len(penalties) == 1:
            divisors.scatter_(1, ids[:, None], next(iter(penalties)))
        else:
            divisors.scatter_(1, ids[:, None], torch.tensor([[s.params.repetition_penalty] for s in batch],
                                                            device=divisors.device))
        # The hidden state that predicted each token is its frame.
        frames = hidden.float()
        # The guard's distance from each sentence's previous frame.
        previous, guarded = self._previous, None
        if previous is not None and previous[0] is batch and previous[1].shape[0] == len(batch):
            distances = (frames - previous[1]).abs().sum(-1)  # the same batch as the last step's
        else:
            guarded = [row for row, s in enumerate(batch) if s.frames and not s.finished]
            distances = torch.zeros(len(batch), device=frames.device)
            if guarded:
                last = torch.stack([batch[row].frames[-1] for row in guarded])
                distances[guarded] = (frames[guarded] - last).abs().sum(-1)
        if lengths is not None:  # a decode step: the next one compares with these frames
            self._previous = (batch, frames)
        gpu = self.device.type == "cuda"
        # Ids below 2**24 are exact in float32: one tensor, one copy.
        host = torch.stack([ids.float(), distances]).to("cpu", non_blocking=gpu)
        step = _Step(batch, ids, lengths, frames, tokens, host, guarded, greedy=tokens is None)
        if gpu:
            step.done = torch.cuda.Event()
            step.done.record()
        return step

    def _settle(self, step: "_Step") -> None:
        """Wait for `step`'s results and decide each sentence's end."""
        if step.done is not None:
            step.done.synchronize()
        chosen, distances = step.host.tolist()
        if step.tokens is None:
            step.tokens = [int(token) for token in chosen]
        guarded = range(len(step.batch)) if step.guarded is None else set(step.guarded)
        eos = self.config.eos_token_id
        # Rows whose sentence ended before this step (it was queued ahead, or they were cancelled
        # while it ran) are computed but not reported.
        step.live = [not sequence.finished for sequence in step.batch]
        for row, (sequence, token) in enumerate(zip(step.batch, step.tokens)):
            if not step.live[row]:
                continue
            if token == eos:
                sequence.finish_reason = "stop"
            else:
                if row in guarded:
                    sequence.guard.observe(distances[row])
                if sequence.guard.flagged and sequence.stop_on_hallucination:
                    sequence.finish_reason = "hallucination"
                elif len(sequence.tokens) + 1 >= sequence.params.max_new_tokens:
                    sequence.finish_reason = "length"

    def _report(self, step: "_Step", events: list[FrameEvent]) -> None:
        """Append each sentence's new token and frame, and the events saying so."""
        eos = self.config.eos_token_id
        for sequence, token, frame, live in zip(step.batch, step.tokens, step.frames.unbind(0), step.live):
            if not live:
                continue
            if token == eos:
                events.append(FrameEvent(sequence, None, True))
                continue
            sequence.tokens.append(token)
            sequence.frames.append(frame)
            events.append(FrameEvent(sequence, frame, sequence.finished))

    def _admit(self, events: list[FrameEvent]) -> None:
        """Prefill as many waiting sentences as there are free slots, in one batched pass."""
        newcomers: list[Generation] = []
        while self.waiting and len(self.active) + len(newcomers) < self.max_batch:
            newcomers.append(self.waiting.popleft())
        if not newcomers:
            return
        self._ensure_cache(max(len(s.prompt) + s.params.max_new_tokens + 1 for s in newcomers),
                           len(self.active) + len(newcomers) + len(self.waiting))
        prompts = []
        divisors = torch.ones(len(newcomers), self.config.vocab_size)
        for offset, sequence in enumerate(newcomers):
            sequence.slot = len(self.active) + offset
            sequence._generator = sequence_generator(sequence.params, sequence.index, sequence.attempt)
            prompt = torch.tensor(sequence.prompt, dtype=torch.long)
            divisors[offset, prompt] = sequence.params.repetition_penalty
            sequence.length = len(sequence.prompt)
            prompts.append(prompt.to(self.device))
        first = newcomers[0].slot
        self.divisors[first:first + len(newcomers)] = divisors.to(self.device)
        hidden, logits = self.lm.prefill(prompts, [s.slot for s in newcomers], self.cache)
        step = self._launch(newcomers, hidden, logits)
        self._settle(step)
        self._report(step, events)
        # A sentence may end at its first token; compaction closes the gap it leaves.
        self.active = self.active + newcomers  # a new list: a changed batch is never the last step's
        self._compact()

    def _compact(self) -> None:
        """Drop finished sentences and keep the live ones in slots 0..B-1."""
        live = [s for s in self.active if not s.finished]
        if len(live) == len(self.active):
            return  # keep the list: the next step knows it as the same batch
        for slot, sequence in enumerate(live):
            if sequence.slot != slot:
                self.cache.move(sequence.slot, slot, sequence.length)
                self.divisors[slot] = self.divisors[sequence.slot]
                sequence.slot = slot
        self.active = live

    def _decode(self, ids: torch.Tensor, lengths: torch.Tensor) -> "_Step":
        reach = max(s.length for s in self.active) + 1  # the positions attention must cover
        hidden, logits = self.lm.decode(ids, lengths, self.cache, reach)
        return self._launch(self.active, hidden, logits, lengths)

    def step(self) -> list[FrameEvent]:
        """Admit what fits, then decode one token for every active sentence.

        On a GPU, while nobody is waiting to join, the next step is queued before this one's
        results are even read, its input ids taken straight from this step's choice on the
        device, so the GPU never waits for the host's bookkeeping. A sentence that turns out to
        have ended gets that one extra step computed and dropped.
        """
        events: list[FrameEvent] = []
        step, self._inflight = self._inflight, None
        if step is None:
            self._admit(events)
            if self.active:
                step = self._decode(
                    torch.tensor([s.tokens[-1] for s in self.active], dtype=torch.long, device=self.device),
                    torch.tensor([s.length for s in self.active], dtype=torch.long, device=self.device))
        if step is not None:
            for sequence in step.batch:
                sequence.length += 1  # the position this step wrote is now part of the sentence
            if self.pipelined and step.greedy and self._may_continue(step.batch):
                self._inflight = self._decode(step.ids, step.lengths + 1)
            self._settle(step)
            self._report(step, events)
            if self._inflight is None:
                self._compact()
        self._release_if_idle()
        return events

    def _may_continue(self, batch: list[Generation]) -> bool:
        """Whether the step after the one in flight can be queued now: nobody waits to join, and
        no sentence has ended or reaches its token cap in the step in flight."""
        if self.waiting and len(self.active) < self.max_batch:
            return False
        return not any(s.finished or len(s.tokens) + 1 >= s.params.max_new_tokens for s in batch)


@dataclass
class _Step:
    """One batched step on its way to the host: the chosen ids stay on the device for the next step."""

    batch: list[Generation]
    ids: torch.Tensor  # (B,) chosen ids, on the device
    lengths: torch.Tensor | None  # (B,) positions this step wrote (decode steps), on the device
    frames: torch.Tensor  # (B, H) float32, on the device
    tokens: list[int] | None  # the chosen ids on the host, once known
    host: torch.Tensor  # (2, B) float32: chosen ids and guard distances, copied to the host
    guarded: list[int] | None  # rows with a guard distance (None: all of them)
    greedy: bool = False  # ids chosen on the device: the next step can start from them unseen
    done: object = None  # a CUDA event: the copy has landed
    live: list[bool] = field(default_factory=list)  # rows still generating when the step was read
