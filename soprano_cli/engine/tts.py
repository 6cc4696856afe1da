"""`SopranoTTS`: the upstream-compatible Python API, plus a few native conveniences, over `Engine`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from soprano_cli.audio.post import AudioOptions, SentenceAudio
from soprano_cli.engine.engine import AudioChunk, Engine, EngineConfig
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.model_facts import REPETITION_PENALTY, RETRIES, SAMPLE_RATE, TEMPERATURE, TOP_P
from soprano_cli.text.script import Script, script_from_text


def _params(top_p, temperature, repetition_penalty, retries=RETRIES, seed=None, max_new_tokens=None) -> SamplingParams:
    extra = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    return SamplingParams(temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty,
                          retries=retries, seed=seed, **extra).validated()


def _write_wav(path: str | os.PathLike, audio: np.ndarray) -> None:
    import soundfile

    # float32 WAV, as upstream writes: lossless for the model's output.
    soundfile.write(str(path), audio, SAMPLE_RATE, subtype="FLOAT")


def _shaped(results, script: Script, options: AudioOptions) -> np.ndarray:
    """One text's whole sentences, shaped and joined with the pauses its markup asks for."""
    shaper = SentenceAudio(options, SAMPLE_RATE, script)
    pieces = [shaper.take(i, result.audio, True) for i, result in enumerate(results)]
    return np.concatenate([*pieces, shaper.end()])


class SopranoTTS:
    """Text to 32 kHz speech. Signature-compatible with upstream `soprano.SopranoTTS`.

    Returns torch tensors (float32, mono, 32 kHz) as upstream does. Unlike upstream, it does not
    synthesize a warm-up sentence at construction, and `dtype`/`model` may be given.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, backend: str = "auto", device: str = "auto", cache_size_mb: int = 100,
                 decoder_batch_size: int | None = None, model_path: str | None = None, *, dtype: str | None = None,
                 max_batch: int | None = None):
        dtype = dtype or os.environ.get("SOPRANO_DTYPE") or "auto"
        self.engine = Engine.load(EngineConfig(
            model=model_path, device=device, backend=backend, dtype=dtype, max_batch=max_batch,
            decoder_batch_size=decoder_batch_size, cache_size_mb=cache_size_mb))
        self.device = self.engine.device
        self.backend = self.engine.backend

    @staticmethod
    def sentences(text: str, normalize: bool = True) -> list[str]:
        """How `text` is cut into sentences before synthesis (normalized, then split)."""
        return script_from_text(text.strip(), normalize=normalize)[0]

    def infer(self, text: str, out_path: str | None = None, top_p: float = TOP_P, temperature: float = TEMPERATURE,
              repetition_penalty: float = REPETITION_PENALTY, retries: int = RETRIES, *, seed: int | None = None, speed: float = 1.0,
              volume: float = 1.0, loudness: float | None = None) -> torch.Tensor:
        """Speech for `text`; also written to `out_path` (WAV) when given.

        `speed` (0.25-4.0, pitch kept), `volume` (a gain) and `loudness` (target LUFS) shape the audio;
        `[pause:1s]` tags and SSML (`<speak>...`) in `text` add pauses (see text/markup.py).
        """
        return self.infer_batch([text], out_dir=None, top_p=top_p, temperature=temperature,
                                repetition_penalty=repetition_penalty, retries=retries, seed=seed, speed=speed,
                                volume=volume, loudness=loudness, _out_paths=[out_path])[0]

    def infer_batch(self, texts: list[str], out_dir: str | None = None, top_p: float = TOP_P,
                    temperature: float = TEMPERATURE, repetition_penalty: float = REPETITION_PENALTY, retries: int = RETRIES, *,
                    seed: int | None = None, speed: float = 1.0, volume: float = 1.0, loudness: float | None = None,
                    _out_paths: list | None = None) -> list[torch.Tensor]:
        """Speech for each text; every sentence of every text shares one LM batch."""
        params = _params(top_p, temperature, repetition_penalty, retries, seed)
        audio_options = AudioOptions(speed=speed, volume=volume, loudness=loudness).validated()
        scripts = [self._script(text) for text in texts]
        flat = [sentence for sentences, _ in scripts for sentence in sentences]
        results = self.engine.synthesize(flat, params)
        outputs, cursor = [], 0
        for sentences, script in scripts:
            outputs.append(torch.from_numpy(_shaped(results[cursor:cursor + len(sentences)], script, audio_options)))
            cursor += len(sentences)
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            for i, audio in enumerate(outputs):
                _write_wav(Path(out_dir) / f"{i}.wav", audio.numpy())
        for path, audio in zip(_out_paths or [], outputs):
            if path:
                _write_wav(path, audio.numpy())
        return outputs

    def infer_stream(self, text: str, chunk_size: int = 1, top_p: float = TOP_P, temperature: float = TEMPERATURE,
                     repetition_penalty: float = REPETITION_PENALTY, *, seed: int | None = None, speed: float = 1.0,
                     volume: float = 1.0, loudness: float | None = None) -> Iterator[torch.Tensor]:
        """Audio pieces as they are generated; joined, they equal `infer(text)` (with the same options) exactly."""
        params = _params(top_p, temperature, repetition_penalty, 0, seed)
        shaper_options = AudioOptions(speed=speed, volume=volume, loudness=loudness).validated()
        sentences, script = self._script(text)
        shaper = SentenceAudio(shaper_options, SAMPLE_RATE, script)
        for chunk in self.engine.stream(sentences, params, chunk_size):
            audio = shaper.take(chunk.sentence, chunk.audio, chunk.final)
            if audio.size:
                yield torch.from_numpy(audio)
        tail = shaper.end()
        if tail.size:
            yield torch.from_numpy(tail)

    @staticmethod
    def _script(text: str) -> tuple[list[str], Script]:
        return script_from_text(text.strip())

    # -- native -------------------------------------------------------------------------------

    def stream(self, text: str, params: SamplingParams | None = None, chunk_frames: int = 1) -> Iterator[AudioChunk]:
        """`AudioChunk`s (with sentence index and text) for `text`, as generated."""
        return self.engine.stream(self.sentences(text), params, chunk_frames)

    def speak(self, text: str, params: SamplingParams | None = None, *, speed: float = 1.0, volume: float = 1.0,
              loudness: float | None = None) -> np.ndarray:
        """Speech for `text` as a float32 numpy array, with its pauses and these audio options."""
        sentences, script = self._script(text)
        options = AudioOptions(speed=speed, volume=volume, loudness=loudness).validated()
        return _shaped(self.engine.synthesize(sentences, params), script, options)
