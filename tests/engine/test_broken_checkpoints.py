"""Broken checkpoints through `soprano synth`: exit 5, one line naming the file and field (#23).

Regression: each of these exited 1 with a traceback, or never exited: 10^9 layers were built one
by one on the meta device (memory grew ~20 MB/s), a tensor shape of 2^51 reached torch.empty, a
tokenizer id past the embedding table failed only at synthesis with an IndexError. The loader
now checks config.json, the safetensors header and the tokenizer against each other before it
allocates anything.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from soprano_cli.engine.random_checkpoint import CheckpointSizes, write_random_checkpoint
from soprano_cli.errors import EXIT_MODEL_INVALID

SOPRANO = [sys.executable, "-m", "soprano_cli"]
KEY = "model.layers.0.mlp.up_proj.weight"


def _config(**changes):
    def damage(folder: Path) -> None:
        path = folder / "config.json"
        config = json.loads(path.read_text())
        config.update(changes)
        path.write_text(json.dumps(config))
    return damage


def _raw_config(text: str):
    def damage(folder: Path) -> None:
        (folder / "config.json").write_text(text)
    return damage


def _header(change):
    """Rewrite model.safetensors' JSON header by hand; the tensor data stays as it was."""
    def damage(folder: Path) -> None:
        path = folder / "model.safetensors"
        data = path.read_bytes()
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
        change(header)
        encoded = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + size :])
    return damage


def _set_entry(field: str, value):
    return _header(lambda header: header[KEY].__setitem__(field, value))


def _tokenizer(change):
    def damage(folder: Path) -> None:
        path = folder / "tokenizer.json"
        path.write_text(change(path.read_text()))
    return damage


def _far_id(text: str) -> str:
    """The letter 'e' (in every prompt here) given an id past the tiny LM's 1,024 embeddings."""
    tokenizer = json.loads(text)
    tokenizer["model"]["vocab"]["e"] = 5000
    return json.dumps(tokenizer)


# name -> (damage, words the one-line message must contain)
BROKEN = {
    "a billion layers": (_config(num_hidden_layers=1e9), ["config.json", "num_hidden_layers"]),
    "zero heads": (_config(num_attention_heads=0), ["config.json", "num_attention_heads"]),
    "zero key-value heads": (_config(num_key_value_heads=0), ["config.json", "num_key_value_heads"]),
    "negative hidden size": (_config(hidden_size=-512), ["config.json", "hidden_size"]),
    "a 401-digit size": (_config(intermediate_size=10**400), ["config.json", "intermediate_size"]),
    "a size as text": (_config(vocab_size="1024"), ["config.json", "vocab_size"]),
    "a fractional size": (_config(head_dim=127.5), ["config.json", "head_dim"]),
    "heads not a multiple of kv heads": (_config(num_key_value_heads=3), ["config.json", "num_key_value_heads"]),
    "eos outside the vocabulary": (_config(eos_token_id=10**6), ["config.json", "eos_token_id"]),
    "rope theta of zero": (_config(rope_parameters={"rope_theta": 0}), ["config.json", "rope_theta"]),
    "missing vocab size": (_config(vocab_size=None), ["config.json", "vocab_size"]),
    "config is a JSON array": (_raw_config("[1, 2, 3]"), ["config.json", "array"]),
    "config is not JSON": (_raw_config("{'hidden_size': 512"), ["config.json"]),
    "negative tensor shape": (_set_entry("shape", [-256, 512]), ["model.safetensors", KEY, "shape"]),
    "2^51 tensor shape": (_set_entry("shape", [2**51, 512]), ["model.safetensors", KEY, "shape"]),
    "shape too big for its bytes": (_set_entry("shape", [512, 512]), ["model.safetensors", KEY, "bytes"]),
    "offsets past the end of the file": (_set_entry("data_offsets", [0, 2**40]), ["model.safetensors", KEY,
                                                                                 "data_offsets"]),
    "negative offsets": (_set_entry("data_offsets", [-8, 0]), ["model.safetensors", KEY, "data_offsets"]),
    "shape that disagrees with the config": (
        _header(lambda h: h[KEY].update(shape=[128, 1024])), ["model.safetensors", KEY, "config.json"]),
    "a tensor missing": (_header(lambda h: h.pop(KEY)), ["model.safetensors", KEY]),
    "header is a JSON array": (_header(lambda h: h.clear() or None), None),  # replaced below
    "tokenizer id past the vocabulary": (_tokenizer(_far_id), ["tokenizer.json", "5000", "vocab_size"]),
    "tokenizer without [START]": (_tokenizer(lambda text: text.replace("[START]", "[BEGIN]")),
                                  ["tokenizer.json", "[START]"]),
}


def _header_array(folder: Path) -> None:
    path = folder / "model.safetensors"
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    path.write_bytes(struct.pack("<Q", 2) + b"[]" + data[8 + size :])


BROKEN["header is a JSON array"] = (_header_array, ["model.safetensors", "array"])


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("good") / "tiny", CheckpointSizes.tiny())


def _synth(folder: Path, out: Path) -> tuple[int, str, float, int]:
    """Exit code, stderr, seconds and peak resident kilobytes of one `soprano synth` run."""
    err = out.with_suffix(".err")
    started = time.monotonic()
    with open(err, "wb") as stderr:
        process = subprocess.Popen(SOPRANO + ["synth", "--model", str(folder), "--no-server", "--device", "cpu",
                                              "--max-frames", "8", "-o", str(out), "Hello there."],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        hung = threading.Timer(60, process.kill)  # the old code never finished on 10^9 layers
        hung.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            hung.cancel()
            process.returncode = 0  # reaped by wait4 above; keeps Popen from waiting again
    return os.waitstatus_to_exitcode(status), err.read_text(), time.monotonic() - started, usage.ru_maxrss


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_checkpoint_exits_5_naming_file_and_field(name, good_checkpoint, tmp_path):
    damage, words = BROKEN[name]
    folder = tmp_path / "broken"
    shutil.copytree(good_checkpoint, folder)
    damage(folder)
    code, stderr, seconds, peak_kb = _synth(folder, tmp_path / "out.wav")
    assert code == EXIT_MODEL_INVALID, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert seconds < 20
    assert peak_kb < 2_000_000  # no allocation sized by the broken field
    assert not (tmp_path / "out.wav").exists()
