"""Beyond the reference: batched equals alone, and streaming is lossless from the first sample."""

from __future__ import annotations

import time

import numpy as np
import pytest

from checkpoints import FRAMES

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.generate import Generation
from soprano_cli.engine.sampling import SamplingParams


def test_batched_equals_one_by_one(tiny_engine, golden_texts):
    together = tiny_engine.synthesize(golden_texts)
    for text, batched in zip(golden_texts, together):
        alone = tiny_engine.synthesize([text])[0]
        assert alone.frames == batched.frames
        np.testing.assert_allclose(batched.audio, alone.audio, atol=1e-5, rtol=0)


def test_sentences_with_their_own_penalties_batch_as_if_alone(tiny_engine, golden_texts):
    """Each sentence's repetition penalty (above, below and at 1) stays its own in a shared batch."""
    params = [SamplingParams(repetition_penalty=p, max_new_tokens=80) for p in (1.2, 0.8, 1.0)]

    def tokens(pairs):
        generator = tiny_engine.new_generator()
        sequences = [Generation(key=i, prompt=tiny_engine.prompt_ids(text), params=p, index=i)
                     for i, (text, p) in enumerate(pairs)]
        for sequence in sequences:
            generator.add(sequence)
        while not generator.idle:
            generator.step()
        return [s.tokens for s in sequences]

    together = tokens(list(zip(golden_texts, params)))
    alone = [tokens([pair])[0] for pair in zip(golden_texts, params)]
    assert together == alone
    assert len({tuple(t) for t in together}) == 3


def test_continuous_batching_with_fewer_slots_than_sentences(tiny_checkpoint, tiny_engine, golden_texts):
    # Two slots for six sentences: sentences join as others leave, results unchanged.
    narrow = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32", max_batch=2))
    texts = golden_texts * 2
    results = narrow.synthesize(texts)
    reference = tiny_engine.synthesize(golden_texts)
    for i, result in enumerate(results):
        np.testing.assert_allclose(result.audio, reference[i % 3].audio, atol=1e-5, rtol=0)


def test_decoder_batches_without_padding_artifacts(tiny_checkpoint, tiny_engine, golden_texts):
    batched = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32", decoder_batch_size=3))
    for a, b in zip(batched.synthesize(golden_texts), tiny_engine.synthesize(golden_texts)):
        assert a.audio.shape == b.audio.shape
        np.testing.assert_allclose(a.audio, b.audio, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk_frames", [1, 2, 5, 1000])
def test_streaming_is_lossless(tiny_engine, golden_texts, chunk_frames):
    whole = tiny_engine.synthesize(golden_texts)
    chunks = list(tiny_engine.stream(golden_texts, chunk_frames=chunk_frames))
    assert [c.sentence for c in chunks] == sorted(c.sentence for c in chunks), "chunks out of order"
    for i, result in enumerate(whole):
        mine = [c for c in chunks if c.sentence == i]
        assert sum(c.final for c in mine) == 1 and mine[-1].final
        streamed = np.concatenate([c.audio for c in mine])
        assert streamed.shape == result.audio.shape
        np.testing.assert_allclose(streamed, result.audio, atol=1e-5, rtol=0)


def test_unordered_stream_gives_each_sentence_as_it_ends(tiny_engine):
    # For Ctrl-C in `synth -o` (issue 15): a short sentence after a long one comes first, whole.
    texts = ["echo sierra charlie india delta papa oscar papa.", "hello world!"]  # about 150 and 40 frames
    ordered = list(tiny_engine.stream(texts, chunk_frames=1 << 30))
    unordered = list(tiny_engine.stream(texts, chunk_frames=1 << 30, in_order=False))
    assert [c.sentence for c in unordered] == [1, 0] and all(c.final for c in unordered)
    for chunk in unordered:
        np.testing.assert_array_equal(chunk.audio, ordered[chunk.sentence].audio)


def test_first_chunk_arrives_long_before_the_sentence_ends(tiny_engine, golden_texts):
    chunks = list(tiny_engine.stream(golden_texts[:1], chunk_frames=1))
    audible = [c for c in chunks if c.audio.size]
    # One chunk per frame once the decoder's look-ahead is covered.
    assert len(audible) >= FRAMES[golden_texts[0]] - 5
    assert audible[0].frames <= 4
    assert audible[0].audio.size <= 3 * 2048


def test_streaming_reads_a_slow_source_without_waiting_for_its_end(tiny_engine, golden_texts):
    arrivals = []

    def slow_source():
        yield golden_texts[1]
        time.sleep(1.0)
        yield golden_texts[2]

    start = time.perf_counter()
    for chunk in tiny_engine.stream(slow_source()):
        arrivals.append((chunk.sentence, time.perf_counter() - start))
    first_audio_of_sentence_0 = min(t for s, t in arrivals if s == 0)
    assert first_audio_of_sentence_0 < 0.9, "first sentence waited for the rest of the input"
    assert {s for s, _ in arrivals} == {0, 1}


def test_stream_passes_on_errors_of_its_source(tiny_engine):
    def failing():
        yield "hello world!"
        raise ValueError("bad input line")

    with pytest.raises(ValueError, match="bad input line"):
        list(tiny_engine.stream(failing()))


def test_seeded_sampling_is_reproducible(tiny_engine, golden_texts):
    params = SamplingParams(temperature=0.8, top_p=0.9, seed=1234)
    first = tiny_engine.synthesize(golden_texts[:2], params)
    second = tiny_engine.synthesize(golden_texts[:2], params)
    other = tiny_engine.synthesize(golden_texts[:2], params.with_seed(99))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.audio, b.audio)
    assert any(a.frames != c.frames or not np.array_equal(a.audio, c.audio) for a, c in zip(first, other))


def test_seeded_sampling_streams_the_same_audio(tiny_engine, golden_texts):
    params = SamplingParams(temperature=0.7, seed=5)
    whole = tiny_engine.synthesize(golden_texts[:1], params)[0]
    streamed = np.concatenate([c.audio for c in tiny_engine.stream(golden_texts[:1], params)])
    np.testing.assert_allclose(streamed, whole.audio, atol=1e-5, rtol=0)


def test_greedy_ignores_the_seed(tiny_engine, golden_texts):
    a = tiny_engine.synthesize(golden_texts[:1], SamplingParams(seed=1))[0]
    b = tiny_engine.synthesize(golden_texts[:1], SamplingParams(seed=2))[0]
    np.testing.assert_array_equal(a.audio, b.audio)


def test_token_cap_limits_frames(tiny_engine, golden_texts):
    result = tiny_engine.synthesize(golden_texts[:1], SamplingParams(max_new_tokens=20))[0]
    assert result.finish_reason == "length"
    assert result.frames == 20
    assert result.audio.size == 19 * 2048


@pytest.mark.parametrize("group", [1, 3, 8])
def test_incremental_decoder_equals_one_pass(tiny_engine, golden, group):
    from soprano_cli.engine.decoder import IncrementalDecoder

    import torch

    _, arrays = golden
    frames = torch.from_numpy(arrays["hidden_0"])
    whole = tiny_engine.decoder(frames[None])[0]
    decoder = IncrementalDecoder(tiny_engine.decoder)
    pieces = [decoder.push(frames[i:i + group], finished=i + group >= len(frames)) for i in range(0, len(frames), group)]
    streamed = torch.cat(pieces)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=0)
    assert pieces[0].numel() > 0 or pieces[1].numel() > 0, "audio must start within the first frames"


def test_a_sentence_joining_a_running_batch_is_guarded_as_if_alone(tiny_engine, golden_texts):
    """The repetition guard compares each sentence's frames with its own previous ones, also
    when a sentence joins a batch that is mid-sentence (no one finishing to make room)."""
    from soprano_cli.engine.generate import RepetitionGuard
    from soprano_cli.engine.sampling import SamplingParams

    class RecordingGuard(RepetitionGuard):
        def observe(self, distance):
            self.seen.append(distance)
            return super().observe(distance)

    def sequence(index):
        made = Generation(key=index, prompt=tiny_engine.prompt_ids(golden_texts[index]), params=SamplingParams(),
                          index=index)
        made.guard = RecordingGuard()
        made.guard.seen = []
        return made

    alone = []
    for index in (0, 1):
        generator = tiny_engine.new_generator()
        generator.add(sequence(index))
        events = []
        while not generator.idle:
            events += generator.step()
        alone.append(events[-1].sequence)
    generator = tiny_engine.new_generator()
    generator.add(sequence(0))
    events = generator.step() + generator.step()
    generator.add(sequence(1))
    while not generator.idle:
        events += generator.step()
    done = {e.sequence.key: e.sequence for e in events if e.finished}
    for key in (0, 1):
        assert done[key].tokens == alone[key].tokens
        assert len(done[key].guard.seen) == len(alone[key].tokens) - 1
        np.testing.assert_allclose(done[key].guard.seen, alone[key].guard.seen, rtol=1e-4)


def test_batch_sizes_default_per_device_and_reject_zero(tiny_checkpoint):
    from soprano_cli.engine.engine import Engine, EngineConfig
    from soprano_cli.errors import InvalidParameterError

    config = EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32")
    engine = Engine.load(config)
    assert (engine.config.max_batch, engine.config.decoder_batch_size) == (16, 1)
    assert config.max_batch is None  # the caller's config is left as given
    for field in ("max_batch", "decoder_batch_size"):
        with pytest.raises(InvalidParameterError):
            Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32", **{field: 0}))
