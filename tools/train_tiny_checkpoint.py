#!/usr/bin/env python3
"""Train the tiny test checkpoint (tests/data/tiny/) to end its sentences, as the real model does.

    python3 tools/train_tiny_checkpoint.py                  # rewrite tests/data/tiny
    python3 tools/train_tiny_checkpoint.py --out DIR --steps 600

The checkpoint has the official layout and the tiny sizes of `CheckpointSizes.tiny()`. Its LM is
taught one task with teacher forcing: after `[STOP][TEXT]{text}[START]` it counts down from
`frames_for(text)` audio tokens to one, then emits EOS. So greedy decoding stops after a number of
frames that grows with the text (up to about 70 characters; longer sentences stop sooner), like the
published model, and the frames between are distinct (no false hallucination flags). Sampling
varies the length, as it does with the real model. The decoder keeps its random weights: its audio is noise-like and
checks numerics, not voice quality. Weights are stored in bfloat16 to keep the file small (about
6 MB); both our engine and the reference upcast them to float32.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from soprano_cli.engine.random_checkpoint import CheckpointSizes, write_random_checkpoint  # noqa: E402

FIRST_AUDIO_ID = 262  # after the six special tokens and the 256 byte tokens
EOS_ID = 5
SKIP_RATE = 0.25
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
WORDS = ("the a of and to in is it that was he for on are with as his they be at one have this from or had by "
         "hello world soprano speech model text quick brown fox jumps over lazy dog extremely lightweight first "
         "second third line test batch job another one two three four five six seven eight nine ten hundred "
         "thousand percent dollars cents time today morning evening there here what when where who why how "
         "yes no good great small large short long sentence story read write play stop start voice sound").split()


def frames_for(text: str) -> int:
    """The number of frames the checkpoint is trained to generate for `text`."""
    return 3 * len(text.encode()) + 4


def random_sentence(rng: random.Random) -> str:
    """A sentence in the model's alphabet: common words, made-up words, numbers and punctuation."""
    words = []
    for _ in range(rng.randint(1, 14)):
        roll = rng.random()
        if roll < 0.6:
            word = rng.choice(WORDS)
        elif roll < 0.9:
            word = "".join(rng.choice(ALPHABET[:26]) for _ in range(rng.randint(1, 9)))
        else:
            word = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 5)))
        if rng.random() < 0.1:
            word += rng.choice(",'-")
        words.append(word)
    text = " ".join(words)[: rng.randint(2, 70)].strip()
    return text + rng.choice([".", ".", "!", "?", ""])


def training_example(tokenizer, text: str, rng: random.Random) -> tuple[list[int], int]:
    """(input ids of prompt + countdown + EOS, index of the first generated position).

    One step in SKIP_RATE skips a count, so the model learns a distribution, as a real one has:
    greedy decoding still counts down one by one, sampling varies the length and the audio.
    """
    prompt = tokenizer.encode(f"[STOP][TEXT]{text}[START]").ids
    count, countdown = frames_for(text), []
    while count >= 1:
        countdown.append(FIRST_AUDIO_ID + count)
        count -= 2 if count > 2 and rng.random() < SKIP_RATE else 1
    return prompt + countdown + [EOS_ID], len(prompt)


def train(folder: Path, steps: int, seed: int) -> None:
    import torch
    from tokenizers import Tokenizer
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    model = Qwen3ForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    started = time.monotonic()
    for step in range(steps):
        # A few whole sequences teach the countdown; many prompts alone teach where it starts.
        whole = [training_example(tokenizer, random_sentence(rng), rng) for _ in range(3)]
        prompts = [training_example(tokenizer, random_sentence(rng), rng) for _ in range(48)]
        prompts = [(ids[: first + 1], first) for ids, first in prompts]
        loss_whole, _ = batch_loss(model, whole, first_weight=10.0)
        loss_first, first_token = batch_loss(model, prompts, first_weight=1.0)
        loss = loss_whole + loss_first
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 20 == 0 or step == steps - 1:
            print(f"step {step:4d}  countdown {loss_whole.item():.4f}  first-token {first_token.item():.4f}  "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    save_bfloat16(model, folder)


def batch_loss(model, batch, *, first_weight: float):
    """(weighted loss over the generated positions, mean loss of the first generated token)."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    weights = torch.zeros(len(batch), width)
    for row, (sequence, first) in enumerate(batch):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
        # Position p predicts token p+1: learn only the generated part.
        labels[row, first - 1: len(sequence) - 1] = torch.tensor(sequence[first:])
        weights[row, first - 1: len(sequence) - 1] = 1.0
        weights[row, first - 1] = first_weight
    logits = model(input_ids=ids, attention_mask=mask).logits
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none", ignore_index=-100)
    first_token = torch.stack([losses[row, first - 1] for row, (_, first) in enumerate(batch)]).mean()
    return (losses * weights).sum() / weights.sum(), first_token


def save_bfloat16(model, folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = {name: tensor.detach().to(torch.bfloat16).contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["dtype"] = "bfloat16"
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def evaluate(folder: Path, count: int = 64, seed: int = 1) -> None:
    """Greedy-decode random sentences with our engine: how many stop, and how close to frames_for."""
    from soprano_cli.engine.engine import Engine, EngineConfig

    rng = random.Random(seed)
    texts = [random_sentence(rng) for _ in range(count)]
    engine = Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="float32"))
    results = engine.generate(texts)
    stopped = sum(r.finish_reason == "stop" for r in results)
    errors = [abs(len(r.frames) - frames_for(t)) for r, t in zip(results, texts)]
    exact = sum(e == 0 for e in errors)
    print(f"{stopped}/{count} stopped; frames exact for {exact}, mean |error| {sum(errors) / count:.1f} frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "tiny")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_random_checkpoint(args.out, CheckpointSizes.tiny(), seed=args.seed)
    (args.out / "sizes.json").unlink()
    train(args.out, args.steps, args.seed)
    evaluate(args.out)


if __name__ == "__main__":
    main()
