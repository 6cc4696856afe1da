"""Sentence timing: `speech.audio.sentence` SSE events and `/v1/audio/speech/captioned`, against a real server."""

from __future__ import annotations

import base64
import io
import json
import re

import httpx
import numpy as np
import openai
import pytest
import soundfile

TEXT = "Hello there. How are you today?\n\nThe quick brown fox jumps.\n\nFine, thanks."
SENTENCES = ["Hello there. How are you today?", "The quick brown fox jumps.", "Fine, thanks."]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def sse_events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def test_sse_carries_each_sentences_timing_after_its_audio(client):
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=TEXT,
                                                            response_format="pcm", stream_format="sse") as response:
        events = sse_events(response)
    heard = 0  # samples at 24 kHz received before each event
    cues = []
    for event in events:
        if event["type"] == "speech.audio.delta":
            heard += len(base64.b64decode(event["audio"])) // 2
        elif event["type"] == "speech.audio.sentence":
            # The sentence's audio went out before its cue, but for what the resampler holds (a few tens of ms).
            assert heard >= round((event["end"] - 0.05) * 24000), (heard, event)
            cues.append(event)
    assert events[-1]["type"] == "speech.audio.done"
    assert [c["text"] for c in cues] == SENTENCES and [c["index"] for c in cues] == [0, 1, 2]
    assert cues[0]["start"] == 0.0
    for before, after in zip(cues, cues[1:]):
        assert before["end"] == after["start"] and before["start"] < before["end"]
    assert abs(cues[-1]["end"] - heard / 24000) < 0.002
    # Every sentence is a whole number of the model's 64 ms frames: the cues are exact, not estimated.
    for cue in cues:
        assert abs(cue["end"] / 0.064 - round(cue["end"] / 0.064)) < 0.02


def test_captioned_json_is_the_speech_file_and_its_cues(server):
    body = {"model": "soprano", "input": TEXT, "response_format": "wav"}
    answer = httpx.post(server.url + "/v1/audio/speech/captioned", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    audio = base64.b64decode(data["audio"])
    assert audio == httpx.post(server.url + "/v1/audio/speech", json={**body, "stream": False}, timeout=60).content
    assert data["audio_format"] == "wav" and data["sample_rate"] == 32000 and "captions" not in data
    samples, rate = soundfile.read(io.BytesIO(audio), dtype="float32")
    assert [c["text"] for c in data["cues"]] == SENTENCES
    assert abs(data["cues"][-1]["end"] - len(samples) / rate) < 0.001
    sse = {"model": "soprano", "input": TEXT, "response_format": "pcm", "stream_format": "sse"}
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=sse, timeout=60) as response:
        timed = [{k: e[k] for k in ("index", "text", "start", "end")} for e in sse_events(response)
                 if e["type"] == "speech.audio.sentence"]
    assert timed == data["cues"]


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_captioned_srt_and_vtt(server, fmt):
    body = {"model": "soprano", "input": TEXT, "response_format": "mp3", "caption_format": fmt}
    data = httpx.post(server.url + "/v1/audio/speech/captioned", json=body, timeout=60).json()
    captions = data["captions"]
    sep = "," if fmt == "srt" else "."
    stamps = re.findall(rf"(\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d) --> (\d\d):(\d\d):(\d\d){re.escape(sep)}(\d\d\d)",
                        captions)
    assert len(stamps) == len(SENTENCES) == len(data["cues"])
    for stamp, cue in zip(stamps, data["cues"]):
        h, m, s, ms, h2, m2, s2, ms2 = map(int, stamp)
        assert (h * 3600 + m * 60 + s + ms / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000) == (cue["start"], cue["end"])
    assert captions.startswith("WEBVTT\n") == (fmt == "vtt")
    assert all(sentence in captions for sentence in SENTENCES)
    assert data["audio"] and data["audio_format"] == "mp3"


@pytest.mark.parametrize("change, param", [({"caption_format": "ass"}, "caption_format"),
                                           ({"response_format": "bogus"}, "response_format"),
                                           ({"input": ""}, "input"),
                                           ({"model": "nope"}, "model")])
def test_captioned_bad_values_are_openai_errors(server, change, param):
    body = {"model": "soprano", "input": "Hello there.", **change}
    answer = httpx.post(server.url + "/v1/audio/speech/captioned", json=body, timeout=30)
    assert answer.status_code in (400, 404), answer.text
    assert answer.json()["error"]["param"] == param
