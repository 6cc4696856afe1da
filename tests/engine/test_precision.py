"""Weight precision modes: float32 exact, int8 and bfloat16 close, `auto` measured and remembered."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from soprano_cli.engine import quantize
from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.errors import InvalidParameterError

needs_int8 = pytest.mark.skipif(not quantize.int8_supported(torch.device("cpu")),
                                reason="this CPU has no fast bfloat16 math for the int8 kernel")


def _teacher_forced_drift(reference: Engine, candidate: Engine, text: str, tokens: list[int]):
    ids = torch.tensor(reference.prompt_ids(text) + tokens)
    span = slice(len(ids) - len(tokens) - 1, len(ids) - 1)
    ours = quantize.hidden_states(reference.lm, ids)[span]
    theirs = quantize.hidden_states(candidate.lm, ids)[span]
    audio_ref, audio = reference.decode([ours])[0], candidate.decode([theirs])[0]
    snr = 10 * np.log10((audio_ref ** 2).sum() / ((audio_ref - audio) ** 2).sum())
    return quantize.cosine_per_position(ours, theirs), snr


@needs_int8
@pytest.mark.parametrize("mode", ["int8", "bfloat16"])
def test_reduced_precision_stays_close_to_float32(tiny_checkpoint, tiny_engine, golden, mode):
    meta, arrays = golden
    candidate = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype=mode))
    assert candidate.dtype == mode
    for case in range(3):
        tokens = arrays[f"gen_ids_{case}"].tolist()[:-1]
        cosine, snr = _teacher_forced_drift(tiny_engine, candidate, meta["cases"][case]["text"], tokens)
        assert float(cosine.min()) > 0.999
        assert snr > 25


@needs_int8
def test_int8_layers_hold_int8_weights(tiny_checkpoint):
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="int8"))
    layer = engine.lm.model.layers[0].mlp.gate_up_proj
    assert isinstance(layer, quantize.Int8Linear) and layer.weight.dtype == torch.int8
    assert engine.lm.lm_head.weight.dtype == torch.float32  # token choice stays in float32
    assert engine.synthesize(["hello world!"])[0].frames > 0


@needs_int8
def test_auto_probes_once_and_remembers(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="auto"))
    record = json.loads((tmp_path / "soprano" / "auto-dtype.json").read_text())
    (entry,) = record.values()
    assert entry["choice"] == first.dtype == "int8" and entry["cosine"] >= quantize.MIN_COSINE
    second = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="auto"))
    assert second.dtype == "int8"
    ids = torch.tensor(first.prompt_ids("hello world!"))
    torch.testing.assert_close(quantize.hidden_states(first.lm, ids), quantize.hidden_states(second.lm, ids))


def test_auto_falls_back_to_float32_when_the_probe_fails(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(quantize, "MIN_COSINE", 1.01)  # no int8 model can pass
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="auto"))
    assert engine.dtype == "float32"
    assert engine.lm.lm_head.weight.dtype == torch.float32
    assert not any(isinstance(m, quantize.Int8Linear) for m in engine.lm.modules())


def test_unknown_dtype(tiny_checkpoint):
    with pytest.raises(InvalidParameterError, match="unknown dtype"):
        Engine.load(EngineConfig(model=str(tiny_checkpoint), dtype="float8"))
