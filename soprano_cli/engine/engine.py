"""The engine facade the CLI, the server and the Python API all use: load once, then synthesize or stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from soprano_cli.engine import checkpoint
from soprano_cli.engine.config import CPU_DECODER_BATCH, CPU_MAX_BATCH, CUDA_DECODER_BATCH, CUDA_MAX_BATCH, EngineConfig
from soprano_cli.engine.decoder import SopranoDecoder
from soprano_cli.engine.devices import select_device
from soprano_cli.engine.chunk_decoding import decode_whole
from soprano_cli.engine.generate import BatchGenerator, Generation
from soprano_cli.engine.loading import load_model
from soprano_cli.engine.prefetch import Prefetch
from soprano_cli.engine.quantize import DynamicInt8Linear
from soprano_cli.engine.results import WHOLE_SENTENCE, AudioChunk, SentenceAudio
from soprano_cli.engine.sentence_batch import Request, SentenceBatch
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import InvalidParameterError
from soprano_cli.model_facts import SAMPLE_RATE




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
            config.decoder_batch_size = CUDA_DECODER_BATCH if wide else CPU_DECODER_BATCH
        if config.max_batch < 1 or config.decoder_batch_size < 1:
            raise InvalidParameterError("max_batch and decoder_batch_size must be at least 1")
        loaded = load_model(config, device)
        return cls(lm=loaded.lm, decoder=loaded.decoder, tokenizer=loaded.tokenizer, config=config,
                   model_dir=loaded.folder, device=device, backend=loaded.backend, dtype=loaded.dtype)

    # -- text -> prompt -----------------------------------------------------------------------

    def prompt_ids(self, sentence: str) -> list[int]:
        """Token ids of `[STOP][TEXT]{sentence}[START]`, the sentence cleaned to the model's alphabet."""
        from soprano_cli.text import model_text

        return self.tokenizer.encode(checkpoint.prompt_text(model_text(sentence))).ids

    def _sequence(self, index: int, text: str, params: SamplingParams, attempt: int = 0,
                  stop_on_hallucination: bool = False) -> Generation:
        return Generation(key=index, prompt=self.prompt_ids(text), params=params, index=index,
                          attempt=attempt, stop_on_hallucination=stop_on_hallucination)

    def new_generator(self) -> BatchGenerator:
        """A batch generator over this engine's LM (the server's scheduler drives one directly)."""
        if self.backend == "lmdeploy":  # lmdeploy schedules its own batches: the same interface over its requests
            from soprano_cli.engine.backends.lmdeploy import LMDeployGenerator

            return LMDeployGenerator(self.lm, max_batch=self.config.max_batch)
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

    def generate(self, sentences: Sequence[str], params: SamplingParams | None = None) -> list[Generation]:
        """Generate every sentence's frames in one continuous batch, retrying suspicious ones."""
        params = (params or SamplingParams()).validated()
        batch = SentenceBatch(self)
        request = Request(params, WHOLE_SENTENCE, decode=False)  # decoded by the caller, all at once
        added = [batch.add(request, text, index) for index, text in enumerate(sentences)]
        while not batch.idle:
            batch.step()
        return [sentence.sequence for sentence in added]

    def decode(self, frame_lists: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Frames (T, C) per sentence -> audio per sentence, `decoder_batch_size` sentences at a time."""
        return decode_whole(self.decoder, frame_lists, self.config.decoder_batch_size, self.device)

    def synthesize(self, sentences: Sequence[str], params: SamplingParams | None = None) -> list[SentenceAudio]:
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


def _stack(frames: list[torch.Tensor], width: int) -> torch.Tensor:
    return torch.stack(frames) if frames else torch.zeros(0, width)
