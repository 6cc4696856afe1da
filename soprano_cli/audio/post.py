"""What happens to the engine's audio before it is encoded: speed, gain, loudness, and pauses between sentences.

One `SentenceAudio` per output stream, fed each sentence's chunks in sentence order; the CLI's
renderer, the HTTP server and the Python API all use it, so a file, a response and a tensor hold
the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soprano_cli.audio import loudness as loud
from soprano_cli.audio.stretch import TimeStretcher, check_speed
from soprano_cli.errors import InvalidParameterError


@dataclass(frozen=True)
class AudioOptions:
    """How the generated speech is shaped; the defaults leave it untouched, sample for sample."""

    speed: float = 1.0  # playback rate, pitch kept (0.25-4.0)
    volume: float = 1.0  # gain multiplier (0-10); past full scale is clipped
    loudness: float | None = None  # target integrated loudness in LUFS (e.g. -16); None: as generated

    def validated(self, names: dict[str, str] | None = None) -> "AudioOptions":
        """Self, or InvalidParameterError naming the field as the caller spells it (`names`)."""
        names = names or {}
        for field, check in (("speed", check_speed), ("volume", loud.check_volume), ("loudness", loud.check_lufs)):
            value = getattr(self, field)
            if value is None:
                continue
            try:
                check(value)
            except (TypeError, ValueError) as error:
                raise InvalidParameterError(str(error), param=names.get(field, field)) from None
        return self


class NoPauses:
    """Pauses of plain text: none."""

    after_last = 0.0

    def pause_before(self, sentence: int) -> float:
        return 0.0


class SentenceAudio:
    """Shapes one stream's audio: `begin(i)` before sentence i's audio, `audio(...)` for its chunks, `end()` last.

    Each sentence is stretched on its own (its tail flushed with its last chunk), so pauses stay
    exactly as long as asked, whatever the speed. With a loudness target, audio is held until the
    gain is known: the first sentence's end or `loudness.MEASURE_SECONDS` of audio, whichever is first.
    """

    def __init__(self, options: AudioOptions, sample_rate: int, pauses=None, sentence_silence: float = 0.0):
        self.options = options
        self.sample_rate = sample_rate
        self.pauses = pauses if pauses is not None else NoPauses()  # has pause_before(i) and after_last
        self.sentence_silence = max(sentence_silence, 0.0)
        self._begun = False
        self._sentence: int | None = None
        self._stretcher: TimeStretcher | None = None
        self._gain = options.volume if options.loudness is None else None  # None: not measured yet
        self._held: list[np.ndarray] = []

    def begin(self, sentence: int) -> np.ndarray:
        """Silence to write before sentence `sentence`: its pause, plus the sentence silence between sentences."""
        seconds = self.pauses.pause_before(sentence) + (self.sentence_silence if self._begun else 0.0)
        self._begun = True
        self._sentence = sentence
        self._stretcher = TimeStretcher(self.options.speed) if self.options.speed != 1.0 else None
        return self._silence(seconds)

    def audio(self, audio: np.ndarray, final: bool) -> np.ndarray:
        """The shaped audio to write for one chunk of the current sentence (may be empty while held)."""
        if self._stretcher is not None:
            audio = self._stretcher.process(audio)
            if final:
                audio = np.concatenate([audio, self._stretcher.flush()])
                self._stretcher = None
        if self._gain is None:
            self._held.append(np.asarray(audio, dtype=np.float32))
            measured = int(loud.MEASURE_SECONDS * self.sample_rate)
            if not (final or sum(part.size for part in self._held) >= measured):
                return np.zeros(0, np.float32)
            audio = np.concatenate(self._held)
            self._held = []
            # Measured on exactly the same samples however the sentence was chunked.
            gain = loud.loudness_gain(audio[:measured], self.sample_rate, self.options.loudness)
            self._gain = self.options.volume * gain
        return loud.apply_gain(audio, self._gain)

    def take(self, sentence: int, audio: np.ndarray, final: bool) -> np.ndarray:
        """`begin` when `sentence` is new, then `audio`: for callers that need no cue between them."""
        lead, shaped = self.take_apart(sentence, audio, final)
        return np.concatenate([lead, shaped]) if lead.size else shaped

    def take_apart(self, sentence: int, audio: np.ndarray, final: bool) -> tuple[np.ndarray, np.ndarray]:
        """`take`'s silence before a new sentence and the sentence's shaped audio, apart: for cues."""
        lead = self.begin(sentence) if sentence != self._sentence else np.zeros(0, np.float32)
        return lead, self.audio(audio, final)

    def end(self) -> np.ndarray:
        """Silence after the last sentence, as the markup asked (call once every sentence is written)."""
        return self._silence(self.pauses.after_last)

    def _silence(self, seconds: float) -> np.ndarray:
        return np.zeros(int(round(seconds * self.sample_rate)), np.float32)
