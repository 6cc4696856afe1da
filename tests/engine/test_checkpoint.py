"""Finding and loading checkpoints: local folders, the hub cache, odd layouts, and clear failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoints import FRAMES

from soprano_cli.engine import checkpoint
from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.random_checkpoint import CheckpointSizes, write_random_checkpoint
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import BackendUnavailableError, InvalidParameterError, ModelLoadError, ModelNotFoundError


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for path in dst.iterdir():
        path.chmod(0o644)
    return dst


def _lay_out_hub_cache(hf_home: Path, repo_id: str, files_from: Path) -> Path:
    """A folder laid out exactly as huggingface_hub's cache stores a downloaded snapshot."""
    owner, name = repo_id.split("/")
    repo = hf_home / "hub" / f"models--{owner}--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for path in files_from.iterdir():
        shutil.copy(path, snapshot / path.name)
    return snapshot


def test_default_model_is_the_published_one_unless_overridden(monkeypatch):
    assert checkpoint.default_model() == "ekwek/Soprano-1.1-80M"
    monkeypatch.setenv("SOPRANO_MODEL", "/models/mine")
    assert checkpoint.default_model() == "/models/mine"


def test_hub_id_resolves_from_the_cache_offline(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = _lay_out_hub_cache(tmp_path / "hf", "ekwek/Soprano-1.1-80M", tiny_checkpoint)
    assert checkpoint.resolve_model(None) == snapshot
    engine = Engine.load(EngineConfig(device="cpu", dtype="float32"))  # the default model, via the cache
    assert engine.model_dir == snapshot
    assert engine.synthesize(["hello world!"])[0].frames == FRAMES["hello world!"]


def test_offline_with_nothing_cached_names_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        checkpoint.resolve_model("ekwek/Soprano-1.1-80M")
    assert "--model PATH" in info.value.message
    assert "\n" not in info.value.message
    assert info.value.exit_code == 4


def test_missing_local_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model folder"):
        checkpoint.resolve_model(str(tmp_path / "nowhere" / "model"))


@pytest.mark.parametrize("name", checkpoint.MODEL_FILES)
def test_missing_file_is_named(tiny_checkpoint, tmp_path, name):
    folder = _copy(tiny_checkpoint, tmp_path / "ckpt")
    (folder / name).unlink()
    with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")):
        Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="float32"))


@pytest.mark.parametrize("name", checkpoint.MODEL_FILES)
def test_corrupt_file_is_named(tiny_checkpoint, tmp_path, name):
    folder = _copy(tiny_checkpoint, tmp_path / "ckpt")
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 3])  # a truncated download
    with pytest.raises(ModelLoadError, match=name.replace(".", r"\.")) as info:
        Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="float32"))
    assert info.value.exit_code == 5


def test_weights_that_do_not_match_the_config(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 300
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not match config.json"):
        Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="float32"))


def test_decoder_pickle_with_code_is_refused(tiny_checkpoint, tmp_path):
    folder = _copy(tiny_checkpoint, tmp_path / "ckpt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"decoder.embed.weight": Evil()}, folder / "decoder.pth")
    with pytest.raises(ModelLoadError, match="decoder.pth"):
        Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="float32"))


def test_transformers_4_config_bfloat16_weights_and_tied_head(tmp_path):
    sizes = CheckpointSizes.tiny()
    folder = write_random_checkpoint(tmp_path / "bf16", sizes, seed=7, dtype="bfloat16", tie=True,
                                     transformers_major=4)
    raw = json.loads((folder / "config.json").read_text())
    assert "rope_theta" in raw and "rope_parameters" not in raw
    engine = Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="float32"))
    assert engine.lm.lm_head.weight is engine.lm.model.embed_tokens.weight
    assert engine.lm.lm_head.weight.dtype == torch.float32  # bfloat16 weights compute in float32 on CPU
    ours = engine.synthesize(["tied weights."], SamplingParams(max_new_tokens=12))[0]
    reference = Engine.load(EngineConfig(model=str(folder), device="cpu", dtype="float32", backend="transformers"))
    theirs = reference.synthesize(["tied weights."], SamplingParams(max_new_tokens=12))[0]
    assert ours.frames == theirs.frames == 12
    np.testing.assert_allclose(ours.audio, theirs.audio, atol=1e-4, rtol=0)


def test_random_checkpoint_has_the_published_sizes_by_default():
    sizes = CheckpointSizes()
    assert (sizes.hidden_size, sizes.num_layers, sizes.vocab_size, sizes.decoder_dim) == (512, 17, 8192, 768)


def test_unavailable_devices_and_backends_fail_clearly(tiny_checkpoint):
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="cuda"):
            Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cuda"))
        with pytest.raises(BackendUnavailableError, match="only on CUDA"):
            Engine.load(EngineConfig(model=str(tiny_checkpoint), backend="lmdeploy"))
    with pytest.raises(InvalidParameterError, match="unknown backend"):
        Engine.load(EngineConfig(model=str(tiny_checkpoint), backend="onnx"))
    with pytest.raises(InvalidParameterError, match="unknown device"):
        Engine.load(EngineConfig(model=str(tiny_checkpoint), device="tpu"))


@pytest.mark.parametrize("field,value", [("temperature", -1.0), ("top_p", 0.0), ("max_new_tokens", 513),
                                         ("repetition_penalty", 0.0), ("retries", -1)])
def test_out_of_range_sampling_parameters(field, value):
    with pytest.raises(InvalidParameterError, match=field):
        SamplingParams(**{field: value}).validated()
