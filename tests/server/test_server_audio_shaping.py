"""speed, volume_multiplier, loudness and pauses (tags, SSML) through a live server and the official `openai` client."""

from __future__ import annotations

import io

import httpx
import numpy as np
import openai
import pytest
import soundfile

from soprano_cli.audio.loudness import integrated_loudness

SPEECH = "/v1/audio/speech"
FRAMES = {"max_new_tokens": 30}  # the tiny checkpoint rarely stops by itself


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=60)


def speech(client, text: str, **options) -> np.ndarray:
    extra = {**FRAMES, **options.pop("extra_body", {})}
    response = client.audio.speech.create(model="soprano", voice="alloy", input=text, response_format="wav",
                                          extra_body=extra, **options)
    with soundfile.SoundFile(io.BytesIO(response.read())) as file:
        assert file.samplerate == 32000
        blocks = list(file.blocks(blocksize=65536, dtype="int16"))
    return np.concatenate(blocks)


def zero_runs(samples: np.ndarray) -> list[int]:
    """Lengths of the runs of exact zeros, longest first."""
    padded = np.concatenate([[0], (samples == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return sorted((edges[1::2] - edges[0::2]).tolist(), reverse=True)


def test_speed_stretches_and_keeps_streamed_equal_to_whole(client, server):
    normal = speech(client, "Hello there.")
    fast = speech(client, "Hello there.", speed=2.0)
    slow = speech(client, "Hello there.", speed=0.5)
    assert len(fast) == round(len(normal) / 2) and len(slow) == len(normal) * 2  # one sentence, stretched whole
    # The streamed response and the complete file (stream: false) hold the same samples.
    body = {"model": "soprano", "input": "Hello there. How are you?", "response_format": "pcm", "speed": 1.5,
            **FRAMES}
    streamed = httpx.post(server.url + SPEECH, json=body, timeout=60).content
    whole = httpx.post(server.url + SPEECH, json={**body, "stream": False}, timeout=60).content
    assert streamed == whole and len(streamed) > 0


def test_volume_multiplier_scales_the_samples(client):
    normal = speech(client, "Hello there.").astype(np.int32)
    louder = speech(client, "Hello there.", extra_body={"volume_multiplier": 3.0}).astype(np.int32)
    assert len(louder) == len(normal)
    assert np.abs(louder - normal * 3).max() <= 2  # int16 rounding, before and after the gain
    assert np.abs(normal).max() > 100  # the comparison is about audible audio


def test_loudness_reaches_its_target(client):
    audio = speech(client, "Hello there.", extra_body={"loudness": -30.0}).astype(np.float64) / 32768
    assert integrated_loudness(audio, 32000) == pytest.approx(-30.0, abs=0.5)


def test_ssml_breaks_and_pause_tags_are_silence_of_the_asked_length(client):
    ssml = speech(client, '<speak>Hello there.<break time="800ms"/>How are you?</speak>')
    tagged = speech(client, "Hello there. [pause:800ms] How are you?")
    np.testing.assert_array_equal(ssml, tagged)  # two spellings of one request
    longest = zero_runs(ssml)[0]
    assert 0.8 * 32000 <= longest <= 0.8 * 32000 + 64  # the pause, plus any zeros the voice ends on
    plain = speech(client, "Hello there. How are you?")
    assert len(ssml) >= len(plain) + 0.8 * 32000 - 2048  # (plain text may merge the two sentences)


def test_pauses_keep_their_length_at_any_speed(client):
    fast = speech(client, "[pause:0.5s]Hello there.", speed=3.0)
    assert zero_runs(fast[:16000])[0] >= 16000  # the leading pause is not sped up
    assert np.any(fast[16000:])


def test_synth_through_the_daemon_shapes_as_in_process(server, tmp_path):
    """`soprano synth` shapes the daemon's exact chunks itself: same file with or without the daemon."""
    import os
    import subprocess
    import sys

    from server_process import TINY_CHECKPOINT

    text = '<speak>Hello there.<break time="300ms"/>How are you?</speak>'
    env = {k: v for k, v in os.environ.items() if k not in ("SOPRANO_SERVER", "SOPRANO_DTYPE")}
    outputs = {}
    for name, where in (("daemon", ["--server", server.url]), ("local", ["--no-server"])):
        out = tmp_path / f"{name}.wav"
        done = subprocess.run([sys.executable, "-m", "soprano_cli", "synth", "-v", *where, "--model", str(TINY_CHECKPOINT),
                               "--dtype", "float32", "--max-frames", "30", "--speed", "1.5", "--volume", "2",
                               "-o", str(out), text], capture_output=True, text=True, timeout=180, env=env)
        assert done.returncode == 0, done.stderr
        assert ("using the daemon" in done.stderr) == (name == "daemon")
        outputs[name] = soundfile.read(out, dtype="int16")[0].astype(np.int32)
    assert len(outputs["daemon"]) == len(outputs["local"])
    assert np.abs(outputs["daemon"] - outputs["local"]).max() <= 1
    assert zero_runs(outputs["daemon"].astype(np.int16))[0] >= 0.3 * 32000
