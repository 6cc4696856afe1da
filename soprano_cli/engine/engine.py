"""The engine facade the CLI, the server and the Python API all use: load once, then synthesize or stream."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence as SequenceOf
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from soprano_cli.engine import checkpoint
from soprano_cli.engine.config import EngineConfig
from soprano_cli.engine.decoder import SopranoDecoder
from soprano_cli.engine.devices import select_backend, select_device, select_dtype
from soprano_cli.engine.chunk_decoding import decode_frames, decode_whole
from soprano_cli.engine.generate import STATIC_CACHE_LEN, BatchGenerator, Sequence
from soprano_cli.engine.memory import release_free_memory
from soprano_cli.engine.prefetch import Prefetch
from soprano_cli.engine.sentence_batch import Request, SentenceBatch
from soprano_cli.engine.results import WHOLE_SENTENCE, AudioChunk, SentenceAudio
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import InvalidParameterError

log = logging.getLogger(__name__)

SAMPLE_RATE = 32000  # the decoder's output rate (contract)


CPU_MAX_BATCH, CUDA_MAX_BATCH = 16, 64  # default sentences per LM batch
# Default sentences per decoder pass on CUDA: passes large enough to fill the GPU, small enough that
# their audio's pinned host buffer (about 1 MB per sentence) is reused from one pass to the next.
CUDA_DECODER_BATCH = 16


class Engine:
    """A loaded Soprano model: tokenizer, LM and decoder on one device."""

    sample_rate = SAMPLE_RATE

    def __init__(self, *, lm, decoder: SopranoDecoder, tokenizer, config: EngineConfig, model_dir: Path,
                 device: torch.device, backend: str, dtype: str = "float32"):
        self.lm = lm
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.config = config
        self.model_dir = model_dir
        self.device = device
        self.backend = backend
        self.dtype = dtype  # the weight precision in use (what `auto` resolved to)
        from soprano_cli.engine.quantize import DynamicInt8Linear

        self.decoder_dtype = ("int8" if any(isinstance(m, DynamicInt8Linear) for m in decoder.modules())
                              else "bfloat16" if decoder.compute_dtype == torch.bfloat16 else "float32")
        self.eos_token_id = lm.config.eos_token_id

    @classmethod
    def load(cls, config: EngineConfig | None = None, **overrides) -> "Engine":
        """Resolve, load and place the model; raises SopranoError subclasses on any problem."""
        config = config or EngineConfig()
        for key, value in overrides.items():
            setattr(config, key, value)
        device = select_device(config.device)
        # A GPU runs wide batches for little more than narrow ones; a CPU's step grows with the batch.
        wide = device.type == "cuda"
        config = replace(config)  # the caller's stays as given
        if config.max_batch is None:
            config.max_batch = CUDA_MAX_BATCH if wide else CPU_MAX_BATCH
        if config.decoder_batch_size is None:
            config.decoder_batch_size = CUDA_DECODER_BATCH if wide else 1
        if config.max_batch < 1 or config.decoder_batch_size < 1:
            raise InvalidParameterError("max_batch and decoder_batch_size must be at least 1")
        backend = select_backend(config.backend, device)
        dtype = select_dtype(config.dtype, device)
        started = time.perf_counter()
        folder = checkpoint.resolve_model(config.model, download=config.download)
        lm_config = checkpoint.read_lm_config(folder)
        tokenizer = checkpoint.load_tokenizer(folder, lm_config)
        checkpoint.load_lm_weights(folder, lm_config)  # header and shapes only: fail before allocating
        if backend == "transformers":
            from soprano_cli.engine.backends.transformers import TransformersLM

            lm = TransformersLM.load(folder, lm_config, device=device, dtype=dtype)
        if backend == "lmdeploy":
            from soprano_cli.engine.backends.lmdeploy import LMDeployLM

            lm = LMDeployLM.load(folder, lm_config, device=device, cache_size_mb=config.cache_size_mb)
        decoder = SopranoDecoder.from_state_dict(checkpoint.load_decoder_weights(folder)).to(device)
        if backend == "torch":
            lm, dtype = _build_torch_lm(folder, lm_config, device, dtype, tokenizer, decoder)
            if device.type == "cuda":
                from soprano_cli.engine.cuda_graphs import CudaGraphRunner

                if dtype != "float32":  # tensor cores; float32 stays the exact mode
                    decoder.compute_dtype = torch.bfloat16
                lm.cuda_graphs = CudaGraphRunner(lm, slots=config.max_batch, max_len=STATIC_CACHE_LEN)
        release_free_memory()
        log.info("loaded %s (%s, %s, LM %s) in %.2f s", folder, backend, device, dtype, time.perf_counter() - started)
        return cls(lm=lm, decoder=decoder, tokenizer=tokenizer, config=config, model_dir=folder,
                   device=device, backend=backend, dtype=dtype)

    # -- text -> prompt -----------------------------------------------------------------------

    def prompt_ids(self, sentence: str) -> list[int]:
        """Token ids of `[STOP][TEXT]{sentence}[START]`, the sentence cleaned to the model's alphabet."""
        from soprano_cli.text import model_text

        return self.tokenizer.encode(f"[STOP][TEXT]{model_text(sentence)}[START]").ids

    def _sequence(self, index: int, text: str, params: SamplingParams, attempt: int = 0,
                  stop_on_hallucination: bool = False) -> Sequence:
        return Sequence(key=index, prompt=self.prompt_ids(text), params=params, index=index,
                        attempt=attempt, stop_on_hallucination=stop_on_hallucination)

    def new_generator(self) -> BatchGenerator:
        """A batch generator over this engine's LM (the server's scheduler drives one directly)."""
        return BatchGenerator(self.lm, max_batch=self.config.max_batch, device=self.device)

    def warm_up(self) -> None:
        """Pay first-call costs now (a daemon's start): a few frames through LM and decoder, and on
        CUDA every graph (each batch bucket and attention span, and the lone-prompt prefills), so
        the first requests run at full speed."""
        generator = self.new_generator()
        generator.add(self._sequence(0, "Warm up.", SamplingParams(max_new_tokens=4)))
        frames = []
        while not generator.idle:
            frames += [event.frame for event in generator.step() if event.frame is not None]
        if len(frames) > 1:
            self.decode([torch.stack(frames)])
        if getattr(self.lm, "cuda_graphs", None) is not None:
            self.lm.cuda_graphs.capture_all()

    # -- whole sentences ----------------------------------------------------------------------

    def generate(self, sentences: SequenceOf[str], params: SamplingParams | None = None) -> list[Sequence]:
        """Generate every sentence's frames in one continuous batch, retrying suspicious ones."""
        params = (params or SamplingParams()).validated()
        batch = SentenceBatch(self)
        request = Request(params, WHOLE_SENTENCE, decode=False)  # decoded by the caller, all at once
        added = [batch.add(request, text, index) for index, text in enumerate(sentences)]
        while not batch.idle:
            batch.step()
        return [sentence.sequence for sentence in added]

    def decode(self, frame_lists: SequenceOf[torch.Tensor]) -> list[np.ndarray]:
        """Frames (T, C) per sentence -> audio per sentence, `decoder_batch_size` sentences at a time."""
        return decode_whole(self.decoder, frame_lists, self.config.decoder_batch_size, self.device)

    def synthesize(self, sentences: SequenceOf[str], params: SamplingParams | None = None) -> list[SentenceAudio]:
        """Audio for each sentence; batched, and each equal to synthesizing it alone."""
        sequences = self.generate(list(sentences), params)
        frames = [_stack(s.frames, self.lm.config.hidden_size) for s in sequences]
        audio = self.decode(frames)
        return [
            SentenceAudio(index=i, text=sentences[i], audio=audio[i], frames=len(s.frames),
                          finish_reason=s.finish_reason or "stop", hallucinated=s.hallucinated)
            for i, s in enumerate(sequences)
        ]

    # -- streaming ----------------------------------------------------------------------------

    def stream(self, sentences: Iterable[str], params: SamplingParams | None = None,
               chunk_frames: int | None = 1, in_order: bool = True) -> Iterator[AudioChunk]:
        """Audio chunks in sentence order as frames arrive; their concatenation is the batch audio.

        `sentences` may be a slow iterator (a pipe): it is read on a thread, and a sentence joins
        the running batch as soon as it arrives. Chunks of a later sentence wait until the earlier
        ones are out, unless `in_order` is False: then each chunk comes as soon as it is decoded
        (a whole sentence as soon as it ends) and its `sentence` index says where it belongs.
        `chunk_frames` None means chunks that start at one frame and double (what the server streams).
        A chunk size past the token cap means whole sentences: each retried as `synthesize` does
        (`params.retries`) and decoded as it does; live chunks cannot be taken back, so they only warn.
        """
        params = (params or SamplingParams()).validated()
        if chunk_frames is not None and chunk_frames < 1:
            raise InvalidParameterError("chunk size must be at least 1 frame", param="chunk_frames")
        source = Prefetch(sentences)
        batch = SentenceBatch(self)
        request = Request(params, chunk_frames, in_order=in_order)
        index = 0  # sentences taken from the source
        while True:
            # Take new sentences while there is room; wait for one only when there is nothing to do.
            while batch.room > 0:
                try:
                    text = source.get(block=batch.idle)
                except StopIteration:
                    break
                if text is None:
                    break
                batch.add(request, text, index)
                index += 1
            if batch.idle and source.exhausted:
                return
            batch.step()
            yield from request.take()


def _build_torch_lm(folder: Path, lm_config, device: torch.device, mode: str, tokenizer, decoder: SopranoDecoder):
    """Our LM in the requested precision, with the decoder's precision to match (set in place).

    int8 runs the decoder's ConvNeXt layers in int8 too, where fbgemm serves them. `auto` keeps
    each int8 part only if it passes its quality probe: hidden-state and logit cosine for the LM, audio SNR
    for the decoder, both against float32 over a fixed prompt. The probe runs once per checkpoint
    and machine; its outcome is cached, so later loads build int8 directly from the file.
    """
    from soprano_cli.engine import quantize
    from soprano_cli.engine.lm import build_lm

    def build(precision: str):
        dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        return build_lm(lm_config, checkpoint.load_lm_weights(folder), device=device, dtype=dtype,
                        int8=precision == "int8"), precision

    if mode != "auto":
        if mode == "int8" and quantize.decoder_int8_supported(device):
            quantize.quantize_decoder(decoder)
        return build(mode)
    if not quantize.int8_supported(device):  # a CPU without a fast int8 kernel
        return build("float32")
    cached = quantize.cached_choice(folder)
    if cached is not None:
        if cached[1] == "int8":
            quantize.quantize_decoder(decoder)
        return build(cached[0])
    lm, _ = build("float32")
    probe = quantize.probe_ids(tokenizer, device)
    reference = quantize.hidden_states(lm, probe)
    decoder_choice, snr = "float32", None
    if quantize.decoder_int8_supported(device):
        reference_audio = decode_frames(decoder, reference)
        replaced = quantize.quantize_decoder(decoder)
        snr = quantize.snr_db(reference_audio, decode_frames(decoder, reference))
        if snr >= quantize.MIN_DECODER_SNR_DB:
            decoder_choice = "int8"
        else:
            quantize.restore_decoder(replaced)
    with torch.inference_mode():
        reference_logits = lm.lm_head(reference)
        lm = quantize.quantize_int8(lm)
        hidden = quantize.hidden_states(lm, probe)
        # The frames (hidden states) and the token choice (logits) must both hold.
        cosine = min(float(quantize.cosine_per_position(reference, hidden).min()),
                     float(quantize.cosine_per_position(reference_logits, lm.lm_head(hidden)).min()))
    choice = "int8" if cosine >= quantize.MIN_COSINE else "float32"
    quantize.remember_choice(folder, choice, cosine, decoder_choice, snr)
    log.info("dtype auto: LM %s (int8 probe cosine %.5f, needs %.3f), decoder %s (int8 SNR %s dB, needs %.0f)",
             choice, cosine, quantize.MIN_COSINE, decoder_choice, "n/a" if snr is None else f"{snr:.1f}",
             quantize.MIN_DECODER_SNR_DB)
    return (lm, "int8") if choice == "int8" else build("float32")


def _stack(frames: list[torch.Tensor], width: int) -> torch.Tensor:
    return torch.stack(frames) if frames else torch.zeros(0, width)
