"""Speed, gain, loudness and pauses (audio/stretch.py, audio/loudness.py, audio/post.py) on synthetic signals."""

from __future__ import annotations

import numpy as np
import pytest

from soprano_cli.audio import loudness as loud
from soprano_cli.audio.post import AudioOptions, SentenceAudio
from soprano_cli.audio.stretch import TimeStretcher, stretch
from soprano_cli.errors import InvalidParameterError

RATE = 32000
SPEEDS = [0.25, 0.5, 0.8, 1.25, 2.0, 4.0]


def voiced(seconds: float = 2.0, f0: float = 150.0, level: float = 0.3) -> np.ndarray:
    """A vowel-like harmonic tone with a slow pitch glide, as a stand-in for speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 0.7 * t))) / RATE
    return (level * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)


def pitch(audio: np.ndarray) -> float:
    """Fundamental frequency of the middle 8192 samples, by autocorrelation (60-400 Hz)."""
    middle = audio[audio.size // 2 - 4096:audio.size // 2 + 4096].astype(np.float64)
    corr = np.correlate(middle, middle, "full")[middle.size - 1:]
    low, high = RATE // 400, RATE // 60
    return RATE / (low + int(np.argmax(corr[low:high])))


def chunked(stretcher: TimeStretcher, audio: np.ndarray, sizes) -> tuple[np.ndarray, list[int]]:
    """Feed `audio` in chunks of `sizes`; the output and where each output chunk began."""
    parts, i = [], 0
    for size in sizes:
        if i >= audio.size:
            break
        parts.append(stretcher.process(audio[i:i + size]))
        i += size
    parts.append(stretcher.flush())
    starts = list(np.cumsum([0] + [p.size for p in parts[:-1]]))
    return np.concatenate(parts), starts


@pytest.mark.parametrize("speed", SPEEDS)
def test_stretch_keeps_pitch_and_scales_duration(speed):
    audio = voiced(1.5)
    out = stretch(audio, speed)
    assert out.size == round(audio.size / speed)
    assert pitch(out) == pytest.approx(pitch(audio), rel=0.02)


@pytest.mark.parametrize("speed", SPEEDS)
def test_streamed_stretch_equals_the_whole_signal_and_has_no_clicks(speed):
    """Any chunking gives the whole-signal output sample for sample; no jump at a chunk boundary
    is larger than the largest sample-to-sample step of the input itself."""
    audio = voiced(1.0)
    whole = stretch(audio, speed)
    rng = np.random.default_rng(int(speed * 100))
    for sizes in ([2048] * 100, [1] * 300 + [5000] * 10, list(rng.integers(1, 4000, 200))):
        streamed, starts = chunked(TimeStretcher(speed), audio, sizes)
        np.testing.assert_array_equal(streamed, whole)
        steps = np.abs(np.diff(streamed))
        boundaries = [s - 1 for s in starts if 0 < s < streamed.size]
        assert steps[boundaries].max(initial=0) <= np.abs(np.diff(audio)).max() * 1.01


def test_stretch_edges():
    np.testing.assert_array_equal(stretch(voiced(0.2), 1.0), voiced(0.2))  # identity, not a copy through WSOLA
    assert stretch(np.zeros(0, np.float32), 2.0).size == 0
    assert stretch(np.ones(10, np.float32) * 0.1, 0.5).size == 20  # shorter than a frame
    for speed in (0.2, 4.5, float("nan")):
        with pytest.raises(ValueError, match="speed must be between"):
            TimeStretcher(speed)


def test_loudness_target_is_reached_and_peaks_are_kept_under_full_scale():
    audio = voiced(2.0, level=0.05)
    gain = loud.loudness_gain(audio, RATE, -20.0)
    assert loud.integrated_loudness(audio * gain, RATE) == pytest.approx(-20.0, abs=0.1)
    loud_audio = voiced(2.0, level=0.5)
    capped = loud.loudness_gain(loud_audio, RATE, -5.0)  # would need more than full scale
    assert np.abs(loud_audio * capped).max() == pytest.approx(loud.PEAK_CEILING, rel=1e-4)
    assert loud.loudness_gain(np.zeros(RATE, np.float32), RATE, -16.0) == 1.0  # silence: left alone
    short = voiced(0.1, level=0.05)  # under one 400 ms gating block: measured all the same
    assert loud.integrated_loudness(short, RATE) == pytest.approx(loud.integrated_loudness(voiced(2.0, level=0.05), RATE), abs=1.0)


def test_volume_scales_and_clips():
    audio = voiced(0.5, level=0.3)
    np.testing.assert_allclose(loud.apply_gain(audio, 0.5), audio * 0.5, rtol=1e-6)
    clipped = loud.apply_gain(audio, 10.0)
    assert np.abs(clipped).max() == 1.0


@pytest.mark.parametrize("options, param", [
    (AudioOptions(speed=5.0), "speed"),
    (AudioOptions(volume=-1.0), "volume_multiplier"),
    (AudioOptions(volume=float("nan")), "volume_multiplier"),
    (AudioOptions(loudness=0.0), "loudness"),
])
def test_bad_options_name_their_parameter(options, param):
    with pytest.raises(InvalidParameterError) as caught:
        options.validated({"volume": "volume_multiplier"})
    assert caught.value.param == param


class Pauses:
    def __init__(self, before: dict, after_last: float = 0.0):
        self.before, self.after_last = before, after_last

    def pause_before(self, sentence: int) -> float:
        return self.before.get(sentence, 0.0)


def shape(options: AudioOptions, sentences: list[np.ndarray], chunk: int | None, pauses=None) -> np.ndarray:
    """One stream through SentenceAudio, each sentence whole (chunk None) or in chunks of `chunk` samples."""
    shaper = SentenceAudio(options, RATE, pauses, sentence_silence=0.25)
    out = []
    for index, audio in enumerate(sentences):
        pieces = [audio] if chunk is None else [audio[i:i + chunk] for i in range(0, audio.size, chunk)]
        for i, piece in enumerate(pieces):
            out.append(shaper.take(index, piece, i == len(pieces) - 1))
    out.append(shaper.end())
    return np.concatenate(out)


@pytest.mark.parametrize("options", [AudioOptions(), AudioOptions(speed=1.7, volume=0.8),
                                     AudioOptions(speed=0.6, loudness=-18.0), AudioOptions(loudness=-30.0)])
def test_streamed_shaping_equals_whole_sentences(options):
    sentences = [voiced(4.0, level=0.05), voiced(0.7, 200.0, level=0.1)]  # the first is past MEASURE_SECONDS
    np.testing.assert_array_equal(shape(options, sentences, 2048), shape(options, sentences, None))


def test_pauses_are_exact_whatever_the_speed():
    sentences = [voiced(0.5), voiced(0.5)]
    pauses = Pauses({0: 0.5, 1: 1.0}, after_last=0.75)
    out = shape(AudioOptions(speed=2.0), sentences, 1024, pauses)
    # lead 0.5 s, sentence (0.25 s), 1.0 s pause + 0.25 s sentence silence, sentence, 0.75 s after.
    assert out.size == round((0.5 + 0.25 + 1.25 + 0.25 + 0.75) * RATE)
    assert not np.any(out[:RATE // 2])
    assert not np.any(out[int(0.75 * RATE):int(2.0 * RATE)])
    assert not np.any(out[-int(0.75 * RATE):])


def test_loudness_gain_is_held_across_sentences():
    quiet, loud_sentence = voiced(1.0, level=0.02), voiced(1.0, level=0.04)
    out = shape(AudioOptions(loudness=-20.0), [quiet, loud_sentence], 512)
    gain = loud.loudness_gain(quiet, RATE, -20.0)
    second = out[-loud_sentence.size:]
    np.testing.assert_allclose(second, loud_sentence * np.float32(gain), rtol=1e-5)


def test_renderer_cues_follow_the_shaped_audio_with_sentences_out_of_order():
    """Captions time the audio as written: after each pause, as long as the stretched sentence."""
    from soprano_cli.engine.results import AudioChunk
    from soprano_cli.rendering import Renderer

    class Sink:
        def __init__(self):
            self.parts = []

        def write(self, audio):
            self.parts.append(np.asarray(audio))

    first, second = voiced(1.0), voiced(0.5)
    sink = Sink()
    shaper = SentenceAudio(AudioOptions(speed=2.0), RATE, Pauses({0: 0.25, 1: 0.5}, after_last=1.0))
    renderer = Renderer(sink, None, shaper=shaper)
    chunks = [AudioChunk(1, "two", second[:4000]), AudioChunk(0, "one", first[:10000]),
              AudioChunk(1, "two", second[4000:], final=True), AudioChunk(0, "one", first[10000:], final=True)]
    stats = renderer.feed(chunks)  # sentence 1 ends first: held until sentence 0 is out
    written = np.concatenate(sink.parts)
    assert written.size == round((0.25 + 0.5 + 0.5 + 0.25 + 1.0) * RATE)
    assert [(round(a, 4), round(b, 4), text) for a, b, text in stats.cues] == [(0.25, 0.75, "one"), (1.25, 1.5, "two")]
