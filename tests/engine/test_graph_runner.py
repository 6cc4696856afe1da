"""The CUDA graph runner's bookkeeping, run on the CPU: bucket padding, the shared cache's lease.

A CPU cannot capture CUDA graphs, so here a "graph" recomputes the captured step into the
captured output buffers when replayed; everything else (padding rows, buffers, which cache
is lent to whom, when graphs are captured) is the runner's own code. The real capture is
checked against eager decoding by the CUDA test in test_static_decode.py.
"""

from __future__ import annotations

import pytest
import torch

from soprano_cli.engine.cuda_graphs import PREFILL_BUCKETS, CudaGraphRunner, batch_buckets
from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.generate import Generation
from soprano_cli.engine.sampling import SamplingParams


class RecomputingGraph:
    """Stands in for torch.cuda.CUDAGraph: replay runs the captured step again into its outputs."""

    def __init__(self, step, outputs):
        self.step, self.outputs = step, outputs

    @torch.inference_mode()
    def replay(self):
        for out, value in zip(self.outputs, self.step()):
            out.copy_(value)


class CPURunner(CudaGraphRunner):
    captures = 0

    def _capture(self, step):
        self.captures += 1
        outputs = step()
        return RecomputingGraph(step, outputs), outputs


@pytest.fixture
def graphed_engine(tiny_checkpoint):
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32", max_batch=8))
    engine.lm.cuda_graphs = CPURunner(engine.lm, slots=8, max_len=1024)
    return engine


def reference_tokens(golden, case: int) -> list[int]:
    return golden[1][f"gen_ids_{case}"].tolist()


def test_buckets():
    assert batch_buckets(1) == [1]
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(64) == [1, 2, 4, 8, 16, 32, 64]
    assert batch_buckets(48) == [1, 2, 4, 8, 16, 32, 48]


def test_padded_batches_generate_the_reference_tokens(graphed_engine, golden, golden_texts):
    """Three sentences of different lengths: batches of 3, 2 and 1 run padded to buckets 4, 2, 1."""
    runner = graphed_engine.lm.cuda_graphs
    sequences = graphed_engine.generate(golden_texts, SamplingParams(retries=0))
    for case, sequence in enumerate(sequences):
        assert sequence.tokens + [graphed_engine.eos_token_id] == reference_tokens(golden, case)
    batches = {bucket for bucket, _ in runner.graphs}
    assert batches <= {1, 2, 4} and 4 in batches and {span for _, span in runner.graphs} == {256}
    assert runner._holder is None  # released once the batch was done


def test_graphs_and_cache_are_reused_by_later_requests(graphed_engine, golden_texts):
    runner = graphed_engine.lm.cuda_graphs
    graphed_engine.warm_up()
    assert sorted(runner.graphs) == [(b, s) for b in (1, 2, 4, 8) for s in (256, 512, 768, 1024)]
    assert sorted(runner.prefill_graphs) == list(PREFILL_BUCKETS)
    captured, cache = runner.captures, runner.cache
    graphed_engine.generate(golden_texts[:2])
    graphed_engine.generate(golden_texts)
    assert runner.captures == captured and runner.cache is cache


def test_a_second_generator_gets_its_own_cache_while_the_first_holds_the_shared_one(graphed_engine, golden,
                                                                                   golden_texts):
    runner = graphed_engine.lm.cuda_graphs
    first = graphed_engine.new_generator()
    first.add(Generation(key=0, prompt=graphed_engine.prompt_ids(golden_texts[0]), params=SamplingParams(), index=0))
    first.step()
    assert first.cache is runner.cache
    # Meanwhile another request runs to the end on a private cache, decoding eagerly.
    second = graphed_engine.generate(golden_texts[1:2], SamplingParams(retries=0))[0]
    assert second.tokens + [graphed_engine.eos_token_id] == reference_tokens(golden, 1)
    first_events = []
    while not first.idle:
        first_events += first.step()
    assert runner._holder is None
    done = [e.sequence for e in first_events if e.finished][0]
    assert done.tokens + [graphed_engine.eos_token_id] == reference_tokens(golden, 0)
    # The shared cache is free again for the next request.
    later = graphed_engine.new_generator()
    later.add(Generation(key=0, prompt=graphed_engine.prompt_ids(golden_texts[2]), params=SamplingParams(), index=0))
    events = []
    while not later.idle:
        events += later.step()
    assert later.cache is runner.cache
    finished = [e.sequence for e in events if e.finished][0]
    assert finished.tokens + [graphed_engine.eos_token_id] == reference_tokens(golden, 2)


def test_a_long_prompt_grows_the_shared_cache_and_drops_its_graphs(graphed_engine, golden_texts):
    runner = graphed_engine.lm.cuda_graphs
    graphed_engine.generate(golden_texts[:1], SamplingParams(max_new_tokens=4))
    old = runner.cache
    assert runner.graphs
    generator = graphed_engine.new_generator()
    assert generator._graphs.lease(generator, 8, 1100) is not old
    assert runner.cache.max_len >= 1100 and not runner.graphs
    runner.release(generator)


def test_a_lone_prompt_is_prefilled_through_its_padded_graph(graphed_engine, golden, golden_texts):
    """One sentence at a time: each prefill replays the graph of its length bucket; the tokens are the reference's."""
    runner = graphed_engine.lm.cuda_graphs
    for case, text in enumerate(golden_texts):
        sequence = graphed_engine.generate([text], SamplingParams(retries=0))[0]
        assert sequence.tokens + [graphed_engine.eos_token_id] == reference_tokens(golden, case)
    lengths = {len(graphed_engine.prompt_ids(text)) for text in golden_texts}
    assert set(runner.prefill_graphs) == {next(b for b in PREFILL_BUCKETS if b >= n) for n in lengths}


def test_attention_spans_grow_with_the_sentences(small_random_checkpoint):
    """Past 256 positions the step attends over 512: the frames still equal plain decoding's."""
    params = SamplingParams(max_new_tokens=300)
    plain = Engine.load(EngineConfig(model=str(small_random_checkpoint), device="cpu", dtype="float32"))
    graphed = Engine.load(EngineConfig(model=str(small_random_checkpoint), device="cpu", dtype="float32"))
    graphed.lm.cuda_graphs = CPURunner(graphed.lm, slots=4, max_len=1024)
    texts = ["a short one.", "and a second, longer sentence."]
    expected, got = plain.generate(texts, params), graphed.generate(texts, params)
    assert {span for _, span in graphed.lm.cuda_graphs.graphs} == {256, 512}
    for a, b in zip(expected, got):
        assert a.tokens == b.tokens
        torch.testing.assert_close(torch.stack(b.frames), torch.stack(a.frames), rtol=1e-5, atol=1e-5)
