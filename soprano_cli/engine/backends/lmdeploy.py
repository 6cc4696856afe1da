"""The LM through lmdeploy's TurboMind engine (CUDA only): upstream's fastest GPU path.

lmdeploy schedules its own batches and owns its KV cache, so this backend does not fit the
prefill/decode interface our `BatchGenerator` drives. `LMDeployGenerator` offers the generator's
interface instead (add, step, cancel, idle, waiting, active, max_batch): each sentence is one
streamed lmdeploy request, and `step()` hands out the frames that have arrived since the last call.

Why TurboMind and never lmdeploy's PyTorch engine: only TurboMind returns hidden states
(`GenerationConfig(output_last_hidden_state='generation')`); the PyTorch engine logs "does not
support output last hidden states" and returns none (lmdeploy/pytorch/messages.py), and a TTS
without frames has nothing to decode. lmdeploy itself would quietly fall back to its PyTorch
engine for an architecture TurboMind lacks, so `load` checks support first.

What TurboMind streams: each partial response carries every generated position's hidden state
so far (rows 0..N-1; row 0 is the last prompt position), with the row that predicted the stop
token removed. That is the contract's frames, the same rows upstream's backend decodes, and it
arrives step by step, so streaming here is live, not per sentence.

lmdeploy is imported only inside `LMDeployLM.load`: the package imports without it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import torch

from soprano_cli.engine.checkpoint import LMConfig
from soprano_cli.engine.config import LMDEPLOY_INSTALL
from soprano_cli.engine.generate import FrameEvent, Generation
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import (BackendUnavailableError, GenerationBackendError, InvalidParameterError, ModelLoadError,
                                SopranoError)

log = logging.getLogger(__name__)

MAX_TEMPERATURE = 2.0  # lmdeploy's GenerationConfig rejects more
# Longest wait for lmdeploy's next output while sentences are running: its engine thread has died
# or hung if nothing comes in this long (a 512-token sentence takes well under a second alone).
OUTPUT_TIMEOUT_S = 120.0


# -- pure pieces (tested without lmdeploy) ----------------------------------------------------------

def turbomind_dtype(dtype: str) -> str:
    """Our `--dtype` as TurboMind's: it computes in bfloat16 (or float16), never float32 or int8 weights."""
    if dtype in ("auto", "bfloat16"):
        return "bfloat16"
    raise InvalidParameterError(
        f"the lmdeploy backend runs its LM in bfloat16 only, not {dtype}; use --dtype bfloat16 "
        "(or --backend torch for float32 or int8)", param="dtype")


def kv_cache_fraction(cache_size_mb: int, total_memory_bytes: int) -> float:
    """`--cache-size` as TurboMind's `cache_max_entry_count`, computed as upstream does: the budget's
    share of the GPU's total memory (lmdeploy applies the share to the memory free at load, so the
    cache it allocates is at most the budget). A value of 1 or more would mean a count of blocks
    to lmdeploy, so the budget must stay below the GPU's memory."""
    if cache_size_mb < 1:
        raise InvalidParameterError(f"cache size must be at least 1 MB, got {cache_size_mb}", param="cache_size_mb")
    fraction = cache_size_mb * 1024**2 / total_memory_bytes
    if fraction >= 1.0:
        raise InvalidParameterError(
            f"cache size {cache_size_mb} MB is more than this GPU's {total_memory_bytes // 1024**2} MB",
            param="cache_size_mb")
    return fraction


def request_seed(params: SamplingParams, index: int, attempt: int) -> int:
    """The seed of one sentence's request: the torch backend's per-sentence derivation, so a seeded
    request is reproducible here too (the tokens differ from torch's: lmdeploy has its own RNG)."""
    if params.temperature == 0:
        return 0  # greedy draws nothing
    if params.seed is None:
        return int(torch.randint(0, 2**62, ()).item())
    return (params.seed * 1_000_003 + index * 7919 + attempt * 104_729) % 2**63


def generation_config_kwargs(params: SamplingParams, eos_token_id: int, seed: int) -> dict:
    """lmdeploy `GenerationConfig` fields for one sentence.

    Greedy (temperature 0) is sampling restricted to the single best id (top_k=1), not lmdeploy's
    `do_sample=False`: lmdeploy's greedy path resets the repetition penalty to 1, and ours, like
    the reference, applies it before taking the best id. Sampling sets top_k=0 (no top-k cut;
    lmdeploy's default is 50, which the reference does not apply).
    """
    if params.temperature > MAX_TEMPERATURE:
        raise InvalidParameterError(
            f"temperature must be at most {MAX_TEMPERATURE:g} with the lmdeploy backend, got {params.temperature}",
            param="temperature")
    greedy = params.temperature == 0
    return dict(
        do_sample=True,
        top_k=1 if greedy else 0,
        top_p=1.0 if greedy else params.top_p,
        temperature=1.0 if greedy else params.temperature,
        repetition_penalty=params.repetition_penalty,
        max_new_tokens=params.max_new_tokens,
        stop_token_ids=[eos_token_id],
        random_seed=seed,
        output_last_hidden_state="generation",
    )


def new_frames(hidden: torch.Tensor | None, seen: int) -> torch.Tensor:
    """The frames one streamed response adds: rows `seen:` of its (N, H) hidden states, which
    hold every generated position so far."""
    if hidden is None:
        raise GenerationBackendError("lmdeploy returned no hidden states (only its TurboMind engine returns them)")
    if hidden.dim() != 2 or hidden.shape[0] < seen:
        raise GenerationBackendError(f"lmdeploy returned hidden states of shape {tuple(hidden.shape)} after {seen} frames")
    return hidden[seen:]


def guard_distances(previous: torch.Tensor | None, frames: torch.Tensor) -> list[float | None]:
    """The repetition guard's distance (summed absolute difference) of each new frame (k, H) from
    the frame before it, in one host copy; None for a sentence's first frame, which has none."""
    chain = frames if previous is None else torch.cat([previous[None], frames])
    gaps = chain.diff(dim=0).abs().sum(-1).tolist() if chain.shape[0] > 1 else []
    return gaps if previous is not None else [None] + gaps


def finish_reason(reason: str | None) -> str | None:
    """lmdeploy's finish reason as ours; its errors and aborts raise."""
    if reason in (None, "stop", "length"):
        return reason
    raise GenerationBackendError(f"lmdeploy ended a sentence with '{reason}'")


# -- the loaded engine -----------------------------------------------------------------------------

class LMDeployLM:
    """A TurboMind pipeline over the checkpoint folder, with our checkpoint's LMConfig."""

    def __init__(self, pipeline, config: LMConfig, device: torch.device, generation_config_class):
        self.pipeline = pipeline
        self.config = config
        self.device = device
        self._generation_config = generation_config_class

    @classmethod
    def load(cls, folder: Path, config: LMConfig, *, device: torch.device, dtype: str,
             cache_size_mb: int, max_batch: int) -> "LMDeployLM":
        fraction = kv_cache_fraction(cache_size_mb, torch.cuda.get_device_properties(device).total_memory)
        try:
            from lmdeploy import GenerationConfig, TurbomindEngineConfig, pipeline
            from lmdeploy.turbomind.supported_models import is_supported
        except ImportError as error:  # a partial install: the package is there, its engine is not
            raise BackendUnavailableError(f"lmdeploy could not be imported ({error}); `{LMDEPLOY_INSTALL}`") from None
        if not is_supported(str(folder)):
            raise BackendUnavailableError(
                f"lmdeploy's TurboMind engine does not support the model in {folder} (its PyTorch engine "
                "returns no hidden states); use --backend torch")
        engine_config = TurbomindEngineConfig(
            dtype=turbomind_dtype(dtype),
            cache_max_entry_count=fraction,
            max_batch_size=max_batch,
            devices=[device.index if device.index is not None else torch.cuda.current_device()],
            enable_metrics=False,  # Prometheus counters per request: host time we do not report
        )
        try:
            lm_pipeline = pipeline(str(folder), backend_config=engine_config, log_level="ERROR")
        except (ImportError, OSError) as error:  # TurboMind's library or its CUDA 12 libraries
            first = str(error).strip().splitlines()
            raise BackendUnavailableError(
                f"lmdeploy's TurboMind engine could not start: {first[0] if first else error}") from None
        except (RuntimeError, ValueError, AssertionError, KeyError) as error:
            first = str(error).strip().splitlines()
            raise ModelLoadError(f"lmdeploy could not load {folder}: {first[0] if first else error}") from None
        backend = getattr(lm_pipeline.async_engine, "backend", "turbomind")
        if backend != "turbomind":  # never expected after is_supported; say so rather than return no frames
            raise BackendUnavailableError(f"lmdeploy chose its {backend} engine, which returns no hidden states")
        return cls(lm_pipeline, config, device, GenerationConfig)

    def generation_config(self, sequence: Generation):
        seed = request_seed(sequence.params, sequence.index, sequence.attempt)
        return self._generation_config(**generation_config_kwargs(sequence.params, self.config.eos_token_id, seed))


@dataclass
class _Output:
    """What one streamed lmdeploy response brought for one sentence (built on lmdeploy's loop thread)."""

    sequence: Generation
    tokens: list[int] = field(default_factory=list)
    frames: torch.Tensor | None = None  # (k, H) float32 on the LM's device
    finish_reason: str | None = None
    error: BaseException | None = None


class LMDeployGenerator:
    """`BatchGenerator`'s interface over lmdeploy: up to `max_batch` sentences run as streamed requests."""

    def __init__(self, lm: LMDeployLM, *, max_batch: int = 64):
        self.lm = lm
        self.config = lm.config
        self.max_batch = max_batch
        self.waiting: deque[Generation] = deque()
        self.active: list[Generation] = []
        self._outputs: queue.Queue[_Output] = queue.Queue()
        self._requests: dict[int, object] = {}  # id(sequence) -> concurrent future of its request

    def add(self, sequence: Generation) -> None:
        self.waiting.append(sequence)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.active

    def cancel(self, key: object) -> None:
        """Drop a sentence, waiting or active, without reporting it; its lmdeploy request is cancelled."""
        self.waiting = deque(s for s in self.waiting if s.key is not key)
        for sequence in self.active:
            if sequence.key is key:
                sequence.finish_reason = "cancelled"
                self._stop(sequence)
        self.active = [s for s in self.active if not s.finished]

    def step(self) -> list[FrameEvent]:
        """Start what fits, wait for lmdeploy's next output, and report every frame that has arrived."""
        while self.waiting and len(self.active) < self.max_batch:
            self._start(self.waiting.popleft())
        if not self.active:
            return []
        try:
            outputs = [self._outputs.get(timeout=OUTPUT_TIMEOUT_S)]
        except queue.Empty:
            raise GenerationBackendError(f"lmdeploy produced nothing for {OUTPUT_TIMEOUT_S:.0f} s") from None
        while True:
            try:
                outputs.append(self._outputs.get_nowait())
            except queue.Empty:
                break
        events: list[FrameEvent] = []
        for output in outputs:
            self._apply(output, events)
        self.active = [s for s in self.active if not s.finished]
        return events

    def _start(self, sequence: Generation) -> None:
        sequence.tokens, sequence.frames = [], []
        gen_config = self.lm.generation_config(sequence)  # raises on parameters lmdeploy refuses
        loop = self.lm.pipeline.internal_thread.loop
        self._requests[id(sequence)] = asyncio.run_coroutine_threadsafe(self._request(sequence, gen_config), loop)
        self.active.append(sequence)

    def _stop(self, sequence: Generation) -> None:
        request = self._requests.pop(id(sequence), None)
        if request is not None:
            request.cancel()  # lmdeploy's generate cancels the engine's request on CancelledError

    async def _request(self, sequence: Generation, gen_config) -> None:
        """One sentence's streamed request, on lmdeploy's event loop; every response goes to the queue."""
        engine = self.lm.pipeline.async_engine
        seen = 0
        try:
            session = self.lm.pipeline.session_mgr.get()
            async for response in engine.generate(messages=None, session_id=session, input_ids=list(sequence.prompt),
                                                  gen_config=gen_config, stream_response=True,
                                                  sequence_start=True, sequence_end=True, do_preprocess=False):
                frames = None
                if response.token_ids or response.last_hidden_state is not None:
                    # A copy now: lmdeploy's buffer is a view it keeps writing into.
                    frames = new_frames(response.last_hidden_state, seen).to(
                        device=self.lm.device, dtype=torch.float32, copy=True)
                    seen += frames.shape[0]
                self._outputs.put(_Output(sequence, list(response.token_ids or []), frames, response.finish_reason))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # handed to the caller's thread, which raises it there
            self._outputs.put(_Output(sequence, error=error))

    def _apply(self, output: _Output, events: list[FrameEvent]) -> None:
        sequence = output.sequence
        if sequence.finished:  # cancelled, or stopped as a hallucination: later outputs are dropped
            return
        if output.error is not None:
            self._stop(sequence)
            if isinstance(output.error, SopranoError):
                raise output.error
            raise GenerationBackendError(f"lmdeploy failed: {type(output.error).__name__}: {output.error}") from output.error
        frames = output.frames if output.frames is not None else torch.zeros(0, self.config.hidden_size)
        if frames.shape[0] != len(output.tokens):
            self._stop(sequence)
            raise GenerationBackendError(f"lmdeploy returned {len(output.tokens)} tokens with {frames.shape[0]} hidden states")
        distances = guard_distances(sequence.frames[-1] if sequence.frames else None, frames)
        for token, frame, distance in zip(output.tokens, frames.unbind(0), distances):
            sequence.tokens.append(token)
            sequence.frames.append(frame)
            if distance is not None and sequence.guard.observe(distance) and sequence.stop_on_hallucination:
                sequence.finish_reason = "hallucination"
                self._stop(sequence)
                events.append(FrameEvent(sequence, frame, True))
                return
            events.append(FrameEvent(sequence, frame, False))
        try:
            reason = finish_reason(output.finish_reason)
        except GenerationBackendError:
            self._stop(sequence)
            raise
        if reason is not None:
            sequence.finish_reason = reason
            self._requests.pop(id(sequence), None)
            events.append(FrameEvent(sequence, None, True))
