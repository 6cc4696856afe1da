"""`--dtype auto`: the fastest precision whose audio matches float32's, measured once per checkpoint and CPU.

The probe generates a few sentences greedily in float32, then runs the same tokens through each
candidate precision (teacher forcing) and compares what the listener gets: the audio's
signal-to-noise ratio against float32's, and how often the candidate's greedy choice is the token
float32 chose. The fastest candidate on this machine that passes both is used; float32 always
passes. The choice, the figures and the reason are cached per checkpoint, CPU and torch version.

Every int8 model is smoothed first (`smoothing.py`): that is what lets int8 hold on a trained
model's outlier channels. Where int8 still fails, some blocks amplify rounding far more than
others: the probe then keeps the blocks whose int8 output strays most in float, one at a time
until the audio passes (at most half of them), and the step timing decides whether that mix
still beats float32. A kept block is float16 on soprano's kernel where that runs (half of
float32's bytes a step; 11 bits of each weight, where int8 keeps about 7), else float32.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from soprano_cli.engine import checkpoint, int8_kernel, quantize, smoothing
from soprano_cli.engine.build import build_lm
from soprano_cli.engine.cache_dir import soprano_cache_dir
from soprano_cli.engine.cpu import cpu_has_fast_bfloat16, cpu_has_flag
from soprano_cli.engine.decoder import decode_frames
from soprano_cli.engine.generate import BatchGenerator, Generation
from soprano_cli.engine.measures import hidden_states, snr_db
from soprano_cli.engine.sampling import SamplingParams

log = logging.getLogger(__name__)

# Pass marks for a candidate, against float32 on the same tokens. 30 dB: the noise is a thirtieth of
# the signal's amplitude. 95 %: one token in twenty may differ, where the candidate's top two
# logits nearly tie. float32 against itself at another batch size stays far above both (the probe
# records that spread with its figures), so a failing candidate is a real loss, not noise.
MIN_SNR_DB = 30.0
MIN_AGREEMENT = 0.95
# The int8 decoder must keep this signal-to-noise ratio against the float32 decoder on the same frames.
MIN_DECODER_SNR_DB = 40.0
PROBE_TEXTS = (
    "hello there, this is a short probe sentence.",
    "numbers like forty two and words like zebra, quartz and rhythm.",
    "is it raining? yes, and the wind keeps blowing from the north.",
)
PROBE_FRAMES = 48  # frames per probe sentence
TIMED_STEPS = 12  # decode steps timed per candidate (after a few untimed ones)
# At most this share of the LM's blocks may stay in float inside an int8 model: beyond it, each
# float block reads two or four times an int8 block's bytes, and float32 itself is near.
MAX_FLOAT_BLOCK_SHARE = 0.5
PROBE_VERSION = 5  # part of the cache key: a changed probe decides afresh


@dataclass
class Figures:
    """How one precision did on the probe."""

    precision: str
    snr_db: float  # worst probe sentence's audio SNR against float32
    agreement: float  # share of probe frames whose greedy token matches float32's
    step_ms: float | None = None  # one-sentence decode step on this machine
    passed: bool = False
    float_blocks: list[int] = field(default_factory=list)  # int8 with these LM blocks kept in float
    kept_in: str = "float32"  # the float those blocks are in: float16 (soprano's kernel) or float32

    def label(self) -> str:
        return precision_label(self.precision, self.float_blocks, self.kept_in)


def precision_label(precision: str, float_blocks: list[int], kept_in: str = "float32") -> str:
    """"int8", or "int8 (blocks 1, 7 in float16)" where some LM blocks stay float."""
    if not float_blocks:
        return precision
    return f"{precision} (blocks {', '.join(map(str, float_blocks))} in {kept_in})"


@dataclass
class Decision:
    """What `auto` chose and why."""

    lm: str
    decoder: str
    reason: str
    figures: list[Figures] = field(default_factory=list)
    decoder_snr_db: float | None = None
    spread: Figures | None = None  # float32 against float32 at another batch size
    cpu: str = ""
    float_blocks: list[int] = field(default_factory=list)  # LM blocks an int8 choice keeps in float
    kept_in: str = "float32"  # ... in this float

    def summary(self) -> str:
        shown = ", ".join(f"{f.label()} {f.snr_db:.1f} dB / {100 * f.agreement:.0f} % greedy"
                          + (f" / {f.step_ms:.1f} ms a step" if f.step_ms is not None else "") for f in self.figures)
        lm = precision_label(self.lm, self.float_blocks, self.kept_in)
        return f"LM {lm}, decoder {self.decoder}: {self.reason}" + (f" ({shown})" if shown else "")


# -- what this CPU runs fast ------------------------------------------------------------------------

def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_kernels() -> dict[str, str]:
    """Which kernel each precision gets on this CPU (from its /proc/cpuinfo flags)."""
    has = cpu_has_flag
    if quantize.use_fbgemm(torch.device("cpu")) and int8_kernel.available():
        int8 = f"soprano {int8_kernel.instruction_set().name} (LM and decoder; KV cache and blocks kept out of int8 in float16)"
    elif quantize.use_fbgemm(torch.device("cpu")):
        int8 = "fbgemm " + ("AMX-INT8" if has("amx_int8") else "VNNI" if has("avx512_vnni", "avx_vnni")
                            else "AVX2 (7-bit inputs)")
    else:
        int8 = "int8 weights, bfloat16 math" if quantize.int8_supported(torch.device("cpu")) else "none"
    bfloat16 = ("oneDNN AMX-BF16" if has("amx_bf16") else "oneDNN AVX512-BF16" if has("avx512_bf16")
                else "none (converted to float32 and back: slower than float32)")
    return {"int8": int8, "bfloat16": bfloat16}


def candidates(device: torch.device) -> list[str]:
    """Reduced precisions worth probing on `device` (float32 is always there to fall back on)."""
    found = ["int8"] if quantize.int8_supported(device) else []
    if device.type == "cuda" or cpu_has_fast_bfloat16():
        found.append("bfloat16")
    return found


# -- cache -----------------------------------------------------------------------------------------

def _checkpoint_id(folder: Path) -> str:
    """The checkpoint file's identity, cheaply: path, size, mtime."""
    weights = (folder / "model.safetensors").resolve()
    stat = weights.stat()
    return f"{weights}|{stat.st_size}|{stat.st_mtime_ns}"


def _decision_key(folder: Path, device: torch.device) -> str:
    where = cpu_name() if device.type == "cpu" else str(device)
    # The int8 kernel and its version are part of the key: their speed (and float rounding) differ.
    kernel = f"soprano-{int8_kernel.source_digest()}" if device.type == "cpu" and int8_kernel.available() else "stock"
    raw = (f"{_checkpoint_id(folder)}|{where}|{kernel}|{','.join(candidates(device))}|{torch.__version__}|"
           f"{MIN_SNR_DB}|{MIN_AGREEMENT}|{MIN_DECODER_SNR_DB}|{PROBE_VERSION}")
    return hashlib.sha1(raw.encode()).hexdigest()


def _decisions_file() -> Path:
    return soprano_cache_dir() / "auto-precision.json"


def _decision_from(entry) -> Decision | None:
    try:
        entry = {key: value for key, value in entry.items() if key != "model"}
        figures = [Figures(**f) for f in entry.pop("figures", [])]
        spread = entry.pop("spread", None)
        return Decision(**entry, figures=figures, spread=None if spread is None else Figures(**spread))
    except (TypeError, AttributeError):
        return None


def cached_decision(folder: Path, device: torch.device) -> Decision | None:
    try:
        decision = _decision_from(json.loads(_decisions_file().read_text()).get(_decision_key(folder, device)))
    except (OSError, ValueError, AttributeError):
        return None
    valid = {"float32", *candidates(device)}
    if decision is None or decision.lm not in valid or decision.decoder not in ("int8", "float32"):
        return None
    return decision


def decisions_on_this_cpu() -> list[tuple[str, Decision]]:
    """(checkpoint folder, decision) for every cached CPU decision made on this CPU model (for `doctor`)."""
    try:
        entries = json.loads(_decisions_file().read_text()).values()
    except (OSError, ValueError, AttributeError):
        return []
    here = cpu_name()
    found = []
    for entry in entries:
        decision = _decision_from(entry) if isinstance(entry, dict) else None
        if decision is not None and decision.cpu == here:
            found.append((str(entry.get("model", "?")), decision))
    return found


def remember(folder: Path, device: torch.device, decision: Decision) -> None:
    """Record a decision so later loads skip the probe (best effort)."""
    path = _decisions_file()
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        known[_decision_key(folder, device)] = {**asdict(decision), "model": str(folder)}
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(known, indent=1))
        temporary.replace(path)
    except (OSError, ValueError):
        pass


def _smoothing_file(folder: Path) -> Path:
    key = hashlib.sha1(f"{_checkpoint_id(folder)}|{smoothing.ALPHAS}".encode()).hexdigest()
    return soprano_cache_dir() / "smoothing" / f"{key}.pt"


# -- building each precision -------------------------------------------------------------------------

def smoothing_for(folder: Path, lm_config, tokenizer, decoder, device: torch.device,
                  float_lm=None) -> smoothing.Smoothing:
    """The checkpoint's smoothing factors: cached, or calibrated on its float32 model (and cached)."""
    path = _smoothing_file(folder)
    found = smoothing.Smoothing.load(path)
    if found is not None and len(found.qkv) == lm_config.num_layers:
        return found
    lm = float_lm if float_lm is not None else build_lm(lm_config, checkpoint.load_lm_weights(folder), device=device)
    found = smoothing.calibrate(lm, decoder, smoothing.calibration_prompts(tokenizer))
    try:
        found.save(path)
    except OSError:
        pass
    return found


def build(folder: Path, lm_config, device: torch.device, precision: str, smoothed: smoothing.Smoothing | None = None,
          float_blocks: frozenset[int] = frozenset()):
    """The LM in `precision`; int8 is built from the smoothed weights, but for the blocks numbered
    in `float_blocks`, which stay float as the checkpoint has them (float16 where soprano's kernel runs)."""
    weights = checkpoint.load_lm_weights(folder)
    if precision == "int8" and smoothed is not None:
        weights = smoothing.SmoothedWeights(weights, smoothed, unsmoothed=float_blocks)
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    lm = build_lm(lm_config, weights, device=device, dtype=dtype, int8=precision == "int8",
                  float_blocks=float_blocks if precision == "int8" else frozenset())
    if precision == "int8" and smoothed is not None:
        # Quantized again from the file's float weight (build_lm's int8 head saw it unsmoothed).
        head = weights["lm_head.weight"] if "lm_head.weight" in weights else lm.model.embed_tokens.weight  # tied
        lm.lm_head = smoothing.OutlierSplitLinear(head, smoothed.head, device)
    return lm


def int8_decoder(decoder, smoothed: smoothing.Smoothing) -> list:
    """Smooth, then quantize the decoder's ConvNeXt layers in place; returns what `undo` needs."""
    replaced = smoothing.smooth_decoder(decoder, smoothed)
    return replaced + quantize.quantize_decoder(decoder)


def undo(replaced: list) -> None:
    quantize.restore_decoder(list(reversed(replaced)))


# -- the probe --------------------------------------------------------------------------------------

@dataclass
class _Sentence:
    prompt: list[int]
    tokens: list[int]  # float32's greedy tokens
    frames: torch.Tensor  # (F, H) from float32's batched decode
    audio: object  # float32 audio of those frames


def _penalized_argmax(logits: torch.Tensor, seen: list[int], penalty: float) -> int:
    logits = logits.clone()
    ids = torch.tensor(sorted(set(seen)), device=logits.device)
    chosen = logits[ids]
    logits[ids] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
    return int(logits.argmax())


def _teacher_forced_hidden(lm, sentence: _Sentence) -> torch.Tensor:
    """The candidate's frames (F, H) for float32's tokens, in one pass."""
    count = sentence.frames.shape[0]
    ids = torch.tensor(sentence.prompt + sentence.tokens[:count - 1], device=lm.model.embed_tokens.weight.device)
    return hidden_states(lm, ids)[len(sentence.prompt) - 1:]


@torch.inference_mode()
def _teacher_forced(lm, sentence: _Sentence, penalty: float) -> tuple[torch.Tensor, float]:
    """The candidate's frames for float32's tokens (one pass), and its greedy agreement with them."""
    count = sentence.frames.shape[0]
    hidden = _teacher_forced_hidden(lm, sentence)
    logits = lm.lm_head(hidden.to(lm.model.embed_tokens.weight.dtype)).float()
    agree = sum(_penalized_argmax(logits[k], sentence.prompt + sentence.tokens[:k], penalty) == sentence.tokens[k]
                for k in range(count))
    return hidden, agree / max(count, 1)


def probe_reference(lm, tokenizer, decoder, device) -> list[_Sentence]:

    generator = BatchGenerator(lm, max_batch=len(PROBE_TEXTS), device=device)
    params = SamplingParams(max_new_tokens=PROBE_FRAMES)
    sequences = [Generation(key=i, prompt=tokenizer.encode(checkpoint.prompt_text(text)).ids, params=params, index=i)
                 for i, text in enumerate(PROBE_TEXTS)]
    for sequence in sequences:
        generator.add(sequence)
    while not generator.idle:
        generator.step()
    found = []
    for s in sequences:
        if len(s.frames) < 2:
            continue
        frames = torch.stack(s.frames).float()
        found.append(_Sentence(s.prompt, list(s.tokens), frames, decode_frames(decoder, frames)))
    return found


def judge(precision: str, lm, decoder, reference: list[_Sentence], float_blocks: list[int] | None = None,
          kept_in: str = "float32") -> Figures:

    penalty = SamplingParams().repetition_penalty
    snrs, agreements, frames = [], 0.0, 0
    for sentence in reference:
        hidden, agreement = _teacher_forced(lm, sentence, penalty)
        snrs.append(snr_db(sentence.audio, decode_frames(decoder, hidden.float())))
        agreements += agreement * hidden.shape[0]
        frames += hidden.shape[0]
    figures = Figures(precision, min(snrs, default=float("inf")), agreements / max(frames, 1),
                      float_blocks=sorted(float_blocks or []), kept_in=kept_in)
    figures.passed = figures.snr_db >= MIN_SNR_DB and figures.agreement >= MIN_AGREEMENT
    return figures


def step_ms(lms: dict[str, object], tokenizer, device) -> dict[str, float]:
    """Median wall time of one decode step for one sentence, per precision. The precisions take
    turns step by step, so a busy machine slows them alike and the comparison holds."""

    prompt = tokenizer.encode(checkpoint.prompt_text(PROBE_TEXTS[0])).ids
    generators = {}
    for precision, lm in lms.items():
        generators[precision] = BatchGenerator(lm, max_batch=1, device=device)
        generators[precision].add(Generation(key=0, prompt=prompt, params=SamplingParams(max_new_tokens=TIMED_STEPS + 4)))
    times: dict[str, list[float]] = {precision: [] for precision in lms}
    while any(not generator.idle for generator in generators.values()):
        for precision, generator in generators.items():
            if not generator.idle:
                started = time.perf_counter()
                generator.step()
                times[precision].append(time.perf_counter() - started)
    return {precision: 1000 * statistics.median(found[4:] or found) for precision, found in times.items()}


@torch.inference_mode()
def _block_noise(int8_lm, float_lm, reference: list[_Sentence]) -> list[float]:
    """For each LM block, how far the hidden states stray from float32's when that block alone is
    int8 (the sum of squared differences over the probe sentences, float32's tokens)."""
    blocks = float_lm.model.layers
    exact = [_teacher_forced_hidden(float_lm, sentence) for sentence in reference]
    noise = []
    for index in range(len(blocks)):
        float_block = blocks[index]
        blocks[index] = int8_lm.model.layers[index]
        try:
            noise.append(sum(float((_teacher_forced_hidden(float_lm, sentence) - want).square().sum())
                             for sentence, want in zip(reference, exact)))
        finally:
            blocks[index] = float_block
    return noise


def keep_blocks_in_float(int8_lm, float_lm, decoder, reference: list[_Sentence]) -> Figures:
    """Move float blocks into the failing `int8_lm`, the one whose int8 form strays most first,
    until it passes the probe or MAX_FLOAT_BLOCK_SHARE of them are float; returns the last
    figures (their `float_blocks` name the blocks moved). Each moved block is a copy of
    `float_lm`'s, in float16 where `build` would make it so: the probe judges what will run."""
    noise = _block_noise(int8_lm, float_lm, reference)
    order = sorted(range(len(noise)), key=noise.__getitem__, reverse=True)
    kept: list[int] = []
    halves = 0
    figures = None
    for index in order[:int(MAX_FLOAT_BLOCK_SHARE * len(order))]:
        block = copy.deepcopy(float_lm.model.layers[index])
        halves += quantize.keep_in_float16(block)
        int8_lm.model.layers[index] = block
        kept.append(index)
        kept_in = "float16" if halves == len(kept) else "float32" if not halves else "float16 or float32"
        figures = judge("int8", int8_lm, decoder, reference, kept, kept_in)
        if figures.passed:
            break
    return figures


def decide(folder: Path, lm_config, tokenizer, decoder, device: torch.device):
    """Probe every candidate against float32; returns (lm, precision, decision) with the decoder set in place."""

    float_lm = build(folder, lm_config, device, "float32")
    reference = probe_reference(float_lm, tokenizer, decoder, device)
    spread = judge("float32", float_lm, decoder, reference)  # one pass against the batched steps
    smoothed = None
    if "int8" in candidates(device):
        smoothed = smoothing_for(folder, lm_config, tokenizer, decoder, device, float_lm)

    decoder_choice, decoder_snr = "float32", None
    if smoothed is not None and quantize.decoder_int8_supported(device):
        replaced = int8_decoder(decoder, smoothed)
        decoder_snr = min((snr_db(s.audio, decode_frames(decoder, s.frames)) for s in reference),
                          default=float("inf"))
        if decoder_snr >= MIN_DECODER_SNR_DB:
            decoder_choice = "int8"
        else:
            undo(replaced)  # the float decoder again, exactly as loaded
    figures, passing = [], {"float32": float_lm}
    for precision in candidates(device):
        lm = build(folder, lm_config, device, precision, smoothed)
        judged = judge(precision, lm, decoder, reference)
        figures.append(judged)
        if not judged.passed and precision == "int8" and lm_config.num_layers > 1:
            judged = keep_blocks_in_float(lm, float_lm, decoder, reference)
            figures.append(judged)
        if judged.passed:
            passing[precision] = lm
    speeds = step_ms(passing, tokenizer, device) if len(passing) > 1 else {}
    spread.step_ms = speeds.get("float32")
    for judged in figures:
        judged.step_ms = speeds.get(judged.precision) if judged.passed else None
    choice = min(speeds, key=speeds.get) if speeds else "float32"
    lm = passing[choice]
    chosen = next((f for f in figures if f.passed and f.precision == choice), None)
    float_blocks = chosen.float_blocks if chosen is not None else []
    if choice != "float32":
        reason = (f"{chosen.label()} is the fastest precision that passes "
                  f"({MIN_SNR_DB:.0f} dB, {100 * MIN_AGREEMENT:.0f} % greedy)")
    else:
        failed = [f.label() for f in figures if not f.passed]
        reason = ("no reduced precision here" if not figures
                  else f"{', '.join(failed)} failed the probe" if failed else "float32 was fastest")
    decision = Decision(lm=choice, decoder=decoder_choice, reason=reason, figures=figures,
                        decoder_snr_db=decoder_snr, spread=spread, cpu=cpu_name(), float_blocks=float_blocks,
                        kept_in=chosen.kept_in if chosen is not None else "float32")
    return lm, choice, decision


def build_for_mode(folder: Path, lm_config, device: torch.device, mode: str, tokenizer, decoder):
    """The LM for `--dtype mode` (with the decoder's precision set in place): (lm, precision)."""
    if mode != "auto":
        smoothed = None
        if mode == "int8":
            smoothed = smoothing_for(folder, lm_config, tokenizer, decoder, device)
            if quantize.decoder_int8_supported(device):
                int8_decoder(decoder, smoothed)
        return build(folder, lm_config, device, mode, smoothed), mode
    if not candidates(device):
        return build(folder, lm_config, device, "float32"), "float32"
    decision = cached_decision(folder, device)
    if decision is not None:
        log.info("dtype auto (cached): %s", decision.summary())
        smoothed = None
        if "int8" in (decision.lm, decision.decoder):
            smoothed = smoothing_for(folder, lm_config, tokenizer, decoder, device)
        if decision.decoder == "int8":
            int8_decoder(decoder, smoothed)
        return build(folder, lm_config, device, decision.lm, smoothed, frozenset(decision.float_blocks)), decision.lm
    lm, choice, decision = decide(folder, lm_config, tokenizer, decoder, device)
    remember(folder, device, decision)
    spread = decision.spread
    float32_step = f" / {spread.step_ms:.1f} ms a step" if spread.step_ms is not None else ""
    log.info("dtype auto: %s; float32 against itself %.1f dB / %.0f %% greedy%s", decision.summary(),
             spread.snr_db, 100 * spread.agreement, float32_step)
    return lm, choice
