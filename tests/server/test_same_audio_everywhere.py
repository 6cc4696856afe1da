"""One request, five front ends, the same float32 samples: they all drive the engine's SentenceBatch.

`Engine.stream`, `SopranoTTS`, `soprano synth` in-process and through a running daemon ask for
whole sentences and must give bit-identical audio for the same text and sampling. They agreed
before only because three copies of the decoding code happened to match; now there is one.

`POST /v1/audio/speech` (the official `openai` client) streams chunks that start at one frame and
double, even as one complete file (whose bytes equal the streamed ones): it equals
`Engine.stream(chunk_frames=None)` bit for bit, and the whole-sentence audio to float rounding.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import openai
import pytest
import soundfile
import torch
from server_process import TINY_CHECKPOINT, ServerProcess

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.results import WHOLE_SENTENCE
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.engine.tts import SopranoTTS

# Two sentences, long enough that neither is merged into the other; sampled, with a seed, so that
# the sentence index (which seeds each sentence's sampler) must match across paths too.
TEXT = "The quick brown fox jumps over the lazy dog. How are you doing on this fine morning, my friend?"
SAMPLING = dict(temperature=0.7, top_p=0.9, repetition_penalty=1.2, seed=7)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """A `soprano serve` of its own: five front ends take a while, and a busy machine starts it slowly."""
    process = ServerProcess(tmp_path_factory.mktemp("five-paths")).start(timeout=300)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def one_thread():
    """The servers and the synth processes run on one thread (OMP_NUM_THREADS=1): float sums depend
    on how matmuls are split, so this process must too for bit-identical audio."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synth(server, *args: str) -> tuple[np.ndarray, bytes]:
    """`soprano synth` to float32 WAV on stdout, with the test daemon's socket as the default one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPRANO_")}
    env.update(XDG_RUNTIME_DIR=str(server.socket_path.parent.parent), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "soprano_cli", "synth", "-v", "--sample-format", "f32", "--format", "wav",
               "--temperature", str(SAMPLING["temperature"]), "--top-p", str(SAMPLING["top_p"]),
               "--repetition-penalty", str(SAMPLING["repetition_penalty"]), "--seed", str(SAMPLING["seed"]),
               *args, TEXT]
    done = subprocess.run(command, capture_output=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    audio, rate = soundfile.read(io.BytesIO(done.stdout), dtype="float32")
    assert rate == 32000
    return audio, done.stderr


def test_every_front_end_gives_the_same_samples(daemon, one_thread):
    params = SamplingParams(**SAMPLING)
    engine = Engine.load(EngineConfig(model=str(TINY_CHECKPOINT), device="cpu", dtype="float32"))
    sentences = SopranoTTS.sentences(TEXT)
    assert len(sentences) == 2
    chunks = list(engine.stream(sentences, params, chunk_frames=WHOLE_SENTENCE))
    streamed = np.concatenate([chunk.audio for chunk in chunks])
    assert [chunk.sentence for chunk in chunks] == [0, 1] and streamed.size > 0

    tts = SopranoTTS(device="cpu", model_path=str(TINY_CHECKPOINT), dtype="float32")
    python_api = tts.infer(TEXT, **SAMPLING).numpy()

    in_process, log = synth(daemon, "--no-server", "--model", str(TINY_CHECKPOINT), "--dtype", "float32")
    assert b"daemon" not in log
    through_daemon, log = synth(daemon)
    assert b"using the daemon" in log

    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)
    response = client.audio.speech.create(model="soprano", voice="default", input=TEXT, response_format="wav",
                                          extra_body={**SAMPLING, "sample_format": "f32", "stream": False})
    speech, rate = soundfile.read(io.BytesIO(response.content), dtype="float32")
    assert rate == 32000

    for name, audio in [("SopranoTTS.infer", python_api), ("soprano synth", in_process),
                        ("soprano synth via the daemon", through_daemon)]:
        assert audio.dtype == np.float32 and audio.shape == streamed.shape, name
        assert np.array_equal(audio, streamed), f"{name}: max difference {np.abs(audio - streamed).max()}"
    growing = np.concatenate([chunk.audio for chunk in engine.stream(sentences, params, chunk_frames=None)])
    assert speech.dtype == np.float32 and np.array_equal(speech, growing)
    np.testing.assert_allclose(speech, streamed, atol=1e-6, rtol=0)
