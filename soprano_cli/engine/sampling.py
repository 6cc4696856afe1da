"""Sampling parameters and the next-token rule: repetition penalty, then greedy or temperature + top-p."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from soprano_cli.errors import InvalidParameterError
from soprano_cli.model_facts import MAX_NEW_TOKENS, REPETITION_PENALTY, RETRIES, TEMPERATURE, TOP_P

if TYPE_CHECKING:  # torch loads only where tokens are chosen, so the daemon's clients stay light
    import torch


@dataclass(frozen=True)
class SamplingParams:
    """How one request samples; defaults are the reference's."""

    temperature: float = TEMPERATURE  # 0 is greedy
    top_p: float = TOP_P  # nucleus mass kept when sampling
    repetition_penalty: float = REPETITION_PENALTY  # >1 discourages ids already in prompt or output
    seed: int | None = None  # makes sampling reproducible
    max_new_tokens: int = MAX_NEW_TOKENS  # cap per sentence (frames + EOS)
    retries: int = RETRIES  # regenerations of a sentence that looks hallucinated or hits the cap

    def validated(self) -> "SamplingParams":
        """Return self, or raise InvalidParameterError naming the first bad field."""
        checks = [
            ("temperature", 0.0 <= self.temperature <= 5.0, "between 0 and 5"),
            ("top_p", 0.0 < self.top_p <= 1.0, "in (0, 1]"),
            ("repetition_penalty", 0.1 <= self.repetition_penalty <= 10.0, "between 0.1 and 10"),
            ("max_new_tokens", 1 <= self.max_new_tokens <= MAX_NEW_TOKENS, f"between 1 and {MAX_NEW_TOKENS}"),
            ("retries", 0 <= self.retries <= 10, "between 0 and 10"),
            ("seed", self.seed is None or 0 <= self.seed < 2**63, "a non-negative integer"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise InvalidParameterError(f"{name} must be {expected}, got {getattr(self, name)}", param=name)
        return self

    def with_seed(self, seed: int | None) -> "SamplingParams":
        return replace(self, seed=seed)


def sequence_generator(params: SamplingParams, index: int, attempt: int) -> torch.Generator | None:
    """A generator per sentence, so its tokens do not depend on what shares its batch."""
    if params.temperature == 0:
        return None
    import torch

    generator = torch.Generator()
    if params.seed is None:
        generator.seed()
    else:
        generator.manual_seed((params.seed * 1_000_003 + index * 7919 + attempt * 104_729) % 2**63)
    return generator


def penalize(logits: torch.Tensor, divisors: torch.Tensor, penalty: float) -> torch.Tensor:
    """The repetition penalty: logits (V,) or (B, V), positive scores of seen ids divided by the
    penalty and negative ones multiplied by it. The seen ids come as `divisors` (the penalty at a
    seen id, 1 elsewhere): bit for bit the reference's `where(seen, where(logits > 0, logits / p,
    logits * p), logits)`, in three vectorized operations where that takes five, two of them slow
    `where`s (a sizeable part of choosing one sentence's token on a CPU).

    Dividing and multiplying by a penalty above 1 shrinks positive scores one way and negative
    ones the other, so the smaller of the two is what the reference picks (the larger below 1);
    at an unseen id both are the score itself.
    """
    import torch

    if penalty == 1.0:
        return logits
    pick = torch.minimum if penalty > 1.0 else torch.maximum
    return pick(logits / divisors, logits * divisors)


def sample_token(scores: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """Pick an id from one sequence's (V,) penalized scores: greedy, or temperature + top-p."""
    import torch

    if params.temperature == 0:
        return int(torch.argmax(scores))
    scores = scores / params.temperature
    if params.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - params.top_p
        drop[-1] = False  # always keep the most likely id
        scores = scores.scatter(0, order, sorted_scores.masked_fill(drop, float("-inf")))
    probs = scores.softmax(-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
