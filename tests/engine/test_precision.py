"""Weight precision modes: float32 exact, int8 and bfloat16 close, `auto` measured and remembered."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from soprano_cli.engine import checkpoint, measures, precision_probe, quantize
from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.errors import InvalidParameterError

needs_int8 = pytest.mark.skipif(not quantize.int8_supported(torch.device("cpu")),
                                reason="this CPU has no fast bfloat16 math for the int8 kernel")


def _teacher_forced_drift(reference: Engine, candidate: Engine, text: str, tokens: list[int]):
    ids = torch.tensor(reference.prompt_ids(text) + tokens)
    span = slice(len(ids) - len(tokens) - 1, len(ids) - 1)
    ours = measures.hidden_states(reference.lm, ids)[span]
    theirs = measures.hidden_states(candidate.lm, ids)[span]
    audio_ref, audio = reference.decode([ours])[0], candidate.decode([theirs])[0]
    snr = 10 * np.log10((audio_ref ** 2).sum() / ((audio_ref - audio) ** 2).sum())
    return measures.cosine_per_position(ours, theirs), snr


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
    assert isinstance(layer, (quantize.Int8Linear, quantize.DynamicInt8Linear)) and layer.weight.dtype == torch.int8
    assert engine.lm.lm_head.weight.dtype == torch.int8  # its outlier channels, if any, in float32 beside it
    assert engine.lm.model.embed_tokens.weight.dtype == torch.float32
    assert engine.synthesize(["hello world!"])[0].frames > 0


@needs_int8
def test_auto_probes_once_and_remembers(small_random_checkpoint, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(precision_probe, "PROBE_FRAMES", 16)
    caplog.set_level("INFO", logger="soprano_cli.engine.precision_probe")  # what `-v` shows
    first = Engine.load(EngineConfig(model=str(small_random_checkpoint), device="cpu", dtype="auto"))
    assert f"dtype auto: LM {first.dtype}, decoder {first.decoder_dtype}: " in caplog.text
    assert " dB / " in caplog.text and "float32 against itself" in caplog.text
    record = json.loads((tmp_path / "soprano" / "auto-precision.json").read_text())
    (entry,) = record.values()
    assert entry["lm"] == first.dtype and entry["reason"] and entry["cpu"] == precision_probe.cpu_name()
    (int8,) = [f for f in entry["figures"] if f["precision"] == "int8"]
    assert int8["passed"] and int8["snr_db"] >= precision_probe.MIN_SNR_DB and int8["step_ms"] > 0
    # float32 against itself at another batch size: the noise floor the thresholds sit far above.
    assert entry["spread"]["snr_db"] > 80 and entry["spread"]["agreement"] == 1.0
    if quantize.decoder_int8_supported(torch.device("cpu")):
        assert entry["decoder"] == first.decoder_dtype == "int8"
        assert entry["decoder_snr_db"] >= precision_probe.MIN_DECODER_SNR_DB
    caplog.clear()
    second = Engine.load(EngineConfig(model=str(small_random_checkpoint), device="cpu", dtype="auto"))
    assert second.dtype == first.dtype and second.decoder_dtype == first.decoder_dtype
    assert "dtype auto (cached): LM" in caplog.text
    ids = torch.tensor(first.prompt_ids("hello world!"))
    torch.testing.assert_close(measures.hidden_states(first.lm, ids), measures.hidden_states(second.lm, ids))


def test_auto_falls_back_to_float32_when_the_probe_fails(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(precision_probe, "PROBE_FRAMES", 16)
    monkeypatch.setattr(precision_probe, "MIN_SNR_DB", 500.0)  # no reduced precision can pass
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="auto"))
    assert engine.dtype == "float32"
    assert engine.lm.lm_head.weight.dtype == torch.float32
    assert not any(isinstance(m, (quantize.Int8Linear, quantize.DynamicInt8Linear)) for m in engine.lm.modules())
    (entry,) = json.loads((tmp_path / "soprano" / "auto-precision.json").read_text()).values()
    if precision_probe.candidates(torch.device("cpu")):
        assert "failed the probe" in entry["reason"]


needs_fbgemm = pytest.mark.skipif(not quantize.decoder_int8_supported(torch.device("cpu")),
                                  reason="no fbgemm int8 kernels on this CPU")


@needs_fbgemm
def test_int8_decoder_holds_quality(tiny_checkpoint, tiny_engine, golden):
    """int8 mode decodes with int8 ConvNeXt layers; their audio stays within the auto threshold."""
    meta, arrays = golden
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="int8"))
    assert engine.decoder_dtype == "int8" and tiny_engine.decoder_dtype == "float32"
    block = engine.decoder.decoder.convnext[0]
    head = engine.decoder.head.out  # float32 weights: int8 would cost its bins about 15 dB
    assert isinstance(block.pwconv1, quantize.DynamicInt8Linear) and isinstance(head, (torch.nn.Linear, quantize.PackedLinear))
    assert head.weight.dtype == torch.float32
    for case in range(3):
        frames = torch.from_numpy(arrays[f"hidden_{case}"])
        reference, audio = tiny_engine.decode([frames])[0], engine.decode([frames])[0]
        assert measures.snr_db(reference, audio) > precision_probe.MIN_DECODER_SNR_DB


def test_bfloat16_decoder_holds_quality_batched_and_streamed(tiny_checkpoint, golden):
    """The decoder's bfloat16 mode (a GPU's default) on this CPU: close to float32, and its
    frame-by-frame streaming still equals its batched output."""
    from soprano_cli.engine.decoder import decode_frames

    arrays = golden[1]
    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32"))
    frames = [torch.from_numpy(arrays[f"hidden_{case}"]) for case in range(3)]
    reference = [engine.decoder(f[None])[0].numpy() for f in frames]
    engine.decoder.compute_dtype = torch.bfloat16
    batched = engine.decoder(torch.nn.utils.rnn.pad_sequence(frames, batch_first=True), [len(f) for f in frames])
    for case, f in enumerate(frames):
        audio = batched[case, :len(reference[case])].numpy()
        assert audio.dtype == np.float32
        assert precision_probe.MIN_DECODER_SNR_DB < measures.snr_db(reference[case], audio) < 100  # reduced, but close
        assert measures.snr_db(audio, decode_frames(engine.decoder, f)) > 60


@needs_fbgemm
def test_auto_keeps_a_float32_decoder_when_its_probe_fails(small_random_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(precision_probe, "PROBE_FRAMES", 16)
    monkeypatch.setattr(precision_probe, "MIN_DECODER_SNR_DB", 500.0)  # no int8 decoder can pass
    loaded = checkpoint.load_decoder_weights(small_random_checkpoint)
    engine = Engine.load(EngineConfig(model=str(small_random_checkpoint), device="cpu", dtype="auto"))
    assert engine.decoder_dtype == "float32"
    # The checkpoint's own layers, not smoothed copies: float32 stays exact.
    for i, block in enumerate(engine.decoder.decoder.convnext):
        assert type(block.pwconv1) is torch.nn.Linear
        assert torch.equal(block.pwconv1.weight, loaded[f"decoder.convnext.{i}.pwconv1.weight"])
        assert torch.equal(block.norm.weight, loaded[f"decoder.convnext.{i}.norm.weight"])
    (entry,) = json.loads((tmp_path / "soprano" / "auto-precision.json").read_text()).values()
    assert entry["decoder"] == "float32" and entry["decoder_snr_db"] < 500


@needs_int8
def test_int8_batched_equals_one_by_one(tiny_checkpoint):
    """Each row is quantized on its own scale, so a sentence's output does not depend on its batch."""
    from soprano_cli.engine.sampling import SamplingParams

    engine = Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="int8"))
    texts = ["hello world!", "a second, somewhat longer sentence to read.", "three."]
    params = SamplingParams(max_new_tokens=60)
    batched = engine.synthesize(texts, params)
    for text, together in zip(texts, batched):
        alone = engine.synthesize([text], params)[0]
        assert alone.frames == together.frames
        np.testing.assert_allclose(alone.audio, together.audio, atol=1e-5)


def test_unknown_dtype(tiny_checkpoint):
    with pytest.raises(InvalidParameterError, match="unknown dtype"):
        Engine.load(EngineConfig(model=str(tiny_checkpoint), dtype="float8"))


@needs_fbgemm
def test_an_int8_decoder_lets_go_of_the_checkpoints_memory_map(tiny_checkpoint):
    """After quantizing, no decoder tensor views decoder.pth's map, so the pages read from it can go."""
    from soprano_cli.engine import checkpoint
    from soprano_cli.engine.decoder import SopranoDecoder

    state = checkpoint.load_decoder_weights(tiny_checkpoint)
    mapped = {tensor.untyped_storage().data_ptr() for tensor in state.values()}
    decoder = SopranoDecoder.from_state_dict(state)
    assert mapped & {t.untyped_storage().data_ptr() for t in [*decoder.parameters(), *decoder.buffers()]}
    quantize.quantize_decoder(decoder)
    assert not mapped & {t.untyped_storage().data_ptr() for t in [*decoder.parameters(), *decoder.buffers()]}
