"""The Python API: the upstream-compatible SopranoTTS surface."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from checkpoints import samples


@pytest.fixture(scope="module")
def tts(tiny_checkpoint):
    from soprano_cli import SopranoTTS

    return SopranoTTS(device="cpu", model_path=str(tiny_checkpoint), dtype="float32")


def test_importing_the_package_does_not_import_torch():
    code = "import sys, soprano_cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_infer_returns_a_tensor_and_writes_a_wav(tts, tmp_path):
    out = tmp_path / "hello.wav"
    audio = tts.infer("Hello world!", out_path=str(out))
    assert isinstance(audio, torch.Tensor) and audio.dtype == torch.float32
    assert audio.numel() == samples("hello world!")
    data, rate = soundfile.read(out, dtype="float32")
    assert rate == 32000
    np.testing.assert_allclose(data, audio.numpy(), atol=1e-6)


def test_infer_batch_and_out_dir(tts, tmp_path):
    outputs = tts.infer_batch(["Hello world!", "The quick brown fox jumps over the lazy dog."],
                              out_dir=str(tmp_path / "out"))
    assert [o.numel() for o in outputs] == [samples("hello world!"), samples("the quick brown fox jumps over the lazy dog.")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.wav", "1.wav"]
    np.testing.assert_allclose(outputs[0].numpy(), tts.infer("Hello world!").numpy(), atol=1e-5)


def test_infer_stream_equals_infer(tts):
    text = "Hello world! The quick brown fox jumps over the lazy dog."
    streamed = torch.cat(list(tts.infer_stream(text, chunk_size=3)))
    whole = tts.infer(text)
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=0)
