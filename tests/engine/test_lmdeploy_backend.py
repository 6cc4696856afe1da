"""The lmdeploy backend's own pieces, which run without lmdeploy or a GPU: the mapping of our
sampling parameters and `--cache-size` onto lmdeploy's, the assembly of frames from its streamed
hidden states, and the generator's bookkeeping. The engine through TurboMind itself is tested in
test_lmdeploy_gpu.py, which skips without CUDA and lmdeploy."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from soprano_cli.engine.backends.lmdeploy import (
    LMDeployGenerator,
    _Output,
    finish_reason,
    generation_config_kwargs,
    guard_distances,
    kv_cache_fraction,
    new_frames,
    request_seed,
    turbomind_dtype,
)
from soprano_cli.engine.config import LMDEPLOY_INSTALL
from soprano_cli.engine.generate import REPEAT_LIMIT, Generation
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import EXIT_BACKEND, GenerationBackendError, InvalidParameterError

EOS = 5


def test_greedy_is_top_k_one_with_the_repetition_penalty_kept():
    # lmdeploy's own greedy mode (do_sample=False) resets the penalty to 1; the reference applies it.
    fields = generation_config_kwargs(SamplingParams(), EOS, seed=0)
    assert fields == dict(do_sample=True, top_k=1, top_p=1.0, temperature=1.0, repetition_penalty=1.2,
                          max_new_tokens=512, stop_token_ids=[EOS], random_seed=0,
                          output_last_hidden_state="generation")


def test_sampling_maps_temperature_top_p_and_penalty_without_a_top_k_cut():
    params = SamplingParams(temperature=0.7, top_p=0.9, repetition_penalty=1.1, max_new_tokens=40, seed=3)
    fields = generation_config_kwargs(params, EOS, seed=11)
    assert (fields["do_sample"], fields["top_k"], fields["top_p"], fields["temperature"]) == (True, 0, 0.9, 0.7)
    assert (fields["repetition_penalty"], fields["max_new_tokens"], fields["random_seed"]) == (1.1, 40, 11)


def test_temperature_above_lmdeploys_limit_is_a_parameter_error():
    with pytest.raises(InvalidParameterError, match="at most 2") as raised:
        generation_config_kwargs(SamplingParams(temperature=2.5), EOS, seed=0)
    assert raised.value.param == "temperature"


def test_seeds_follow_the_torch_backends_derivation():
    seeded = SamplingParams(temperature=0.5, seed=42)
    assert request_seed(seeded, 3, 1) == (42 * 1_000_003 + 3 * 7919 + 104_729) % 2**63
    assert request_seed(seeded, 3, 1) != request_seed(seeded, 4, 1) != request_seed(seeded, 3, 2)
    assert request_seed(SamplingParams(), 3, 1) == 0  # greedy draws nothing
    unseeded = SamplingParams(temperature=0.5)
    assert 0 <= request_seed(unseeded, 0, 0) < 2**63


@pytest.mark.parametrize("cache_mb,total,expected", [(100, 80 * 2**30, 100 / (80 * 1024)), (1024, 2**32, 0.25)])
def test_cache_size_is_upstreams_share_of_gpu_memory(cache_mb, total, expected):
    assert kv_cache_fraction(cache_mb, total) == pytest.approx(expected)


@pytest.mark.parametrize("cache_mb", [0, -5, 4096])
def test_cache_size_outside_the_gpu_is_refused(cache_mb):
    # A share of 1 or more would be read by lmdeploy as a count of blocks.
    with pytest.raises(InvalidParameterError, match="cache size"):
        kv_cache_fraction(cache_mb, 2**32)


@pytest.mark.parametrize("ours,theirs", [("auto", "bfloat16"), ("bfloat16", "bfloat16")])
def test_dtypes_turbomind_runs(ours, theirs):
    assert turbomind_dtype(ours) == theirs


@pytest.mark.parametrize("ours", ["float32", "int8"])
def test_dtypes_turbomind_cannot_run_say_which_to_use(ours):
    with pytest.raises(InvalidParameterError, match="bfloat16 only"):
        turbomind_dtype(ours)


@pytest.mark.parametrize("cuts", [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [3, 3, 7, 10], [10], [0, 0, 4, 4, 10]])
def test_streamed_hidden_states_assemble_into_the_whole_sentence(cuts):
    """Each TurboMind response holds every row so far; taking the new rows of each, however the
    engine grouped its steps, gives each frame exactly once and in order."""
    whole = torch.randn(10, 8)
    seen, pieces = 0, []
    for count in cuts:
        piece = new_frames(whole[:count], seen)
        seen += piece.shape[0]
        pieces.append(piece)
    assert torch.equal(torch.cat(pieces), whole)


def test_missing_or_shrinking_hidden_states_are_errors():
    with pytest.raises(GenerationBackendError, match="no hidden states"):
        new_frames(None, 0)
    with pytest.raises(GenerationBackendError, match="after 4 frames"):
        new_frames(torch.zeros(3, 8), 4)


def test_guard_distances_are_the_generators_rule():
    frames = torch.randn(6, 8)
    previous = torch.randn(8)
    chain = torch.cat([previous[None], frames])
    expected = [float((chain[i + 1] - chain[i]).abs().sum()) for i in range(6)]
    assert guard_distances(previous, frames) == pytest.approx(expected)
    first, *rest = guard_distances(None, frames)
    assert first is None and rest == pytest.approx(expected[1:])
    assert guard_distances(None, frames[:1]) == [None]
    assert guard_distances(previous, frames[:0]) == []


@pytest.mark.parametrize("reason", [None, "stop", "length"])
def test_finish_reasons_we_know(reason):
    assert finish_reason(reason) == reason


@pytest.mark.parametrize("reason", ["error", "abort"])
def test_lmdeploy_errors_raise(reason):
    with pytest.raises(GenerationBackendError, match=reason):
        finish_reason(reason)


def _generator() -> LMDeployGenerator:
    """A generator whose responses the test hands in (what `_request` puts on its queue)."""
    lm = SimpleNamespace(config=SimpleNamespace(hidden_size=8, eos_token_id=EOS), device=torch.device("cpu"))
    return LMDeployGenerator(lm, max_batch=4)


def _sequence(**overrides) -> Generation:
    return Generation(key=object(), prompt=[2, 3, 4], params=SamplingParams(), **overrides)


def test_responses_become_the_events_the_engine_reads():
    generator, sequence = _generator(), _sequence()
    generator.active.append(sequence)
    frames = torch.randn(3, 8)
    events = []
    generator._apply(_Output(sequence, [10, 11], frames[:2]), events)
    generator._apply(_Output(sequence, [12], frames[2:]), events)
    generator._apply(_Output(sequence, [], None, "stop"), events)
    assert [(e.frame is not None, e.finished) for e in events] == [(True, False)] * 3 + [(False, True)]
    assert sequence.tokens == [10, 11, 12] and sequence.finish_reason == "stop"
    assert torch.equal(torch.stack(sequence.frames), frames)


def test_a_response_whose_tokens_and_frames_disagree_is_an_error():
    generator, sequence = _generator(), _sequence()
    with pytest.raises(GenerationBackendError, match="2 tokens with 1 hidden states"):
        generator._apply(_Output(sequence, [10, 11], torch.randn(1, 8)), [])


def test_a_repeating_sentence_stops_as_a_hallucination_and_later_responses_are_dropped():
    generator, sequence = _generator(), _sequence(stop_on_hallucination=True)
    generator.active.append(sequence)
    same = torch.ones(REPEAT_LIMIT + 4, 8)
    events = []
    generator._apply(_Output(sequence, list(range(100, 100 + same.shape[0])), same), events)
    assert sequence.finish_reason == "hallucination" and events[-1].finished
    assert len(sequence.frames) == REPEAT_LIMIT + 2  # the first frame has no distance; then REPEAT_LIMIT + 1 close ones
    generator._apply(_Output(sequence, [7], torch.ones(1, 8)), events)  # still in flight when it was stopped
    assert len(sequence.frames) == REPEAT_LIMIT + 2


def test_cancel_drops_waiting_and_running_sentences():
    generator, waiting, running = _generator(), _sequence(), _sequence()
    generator.add(waiting)
    generator.active.append(running)
    generator.cancel(waiting.key)
    generator.cancel(running.key)
    assert generator.idle and running.finish_reason == "cancelled"


def test_without_cuda_or_lmdeploy_the_cli_exits_9_with_the_install_hint(tiny_checkpoint, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the hint is for machines without it or without lmdeploy")
    for args, env in [(["--backend", "lmdeploy"], {}), ([], {"SOPRANO_BACKEND": "lmdeploy"})]:
        done = subprocess.run([sys.executable, "-m", "soprano_cli", "synth", "--model", str(tiny_checkpoint),
                               *args, "-o", str(tmp_path / "out.wav"), "Hello."],
                              capture_output=True, timeout=120, env={**os.environ, **env})
        assert done.returncode == EXIT_BACKEND, done.stderr
        assert LMDEPLOY_INSTALL.encode() in done.stderr and b"--backend torch" in done.stderr
        assert b"Traceback" not in done.stderr and not (tmp_path / "out.wav").exists()
