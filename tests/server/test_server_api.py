"""The OpenAI speech API against a real server process, through the official `openai` client."""

from __future__ import annotations

import base64
import io
import json
import stat
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
import soundfile
from system_deps import needs

TEXTS = [
    "Hello there.",
    "How are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "Soprano speaks from your own machine.",
    "It is a fine day for a walk in the park.",
    "Please call me back when you can.",
    "Numbers like 42 become words.",
    "This is the seventh sentence of the test.",
    "Short one.",
    "Streaming audio starts before the end.",
    "Every request shares one batch.",
    "Greedy decoding is deterministic.",
    "The server keeps the model loaded.",
    "A daemon makes later requests fast.",
    "Sixteen clients at once.",
    "And this is the last one.",
]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=60)


def wav_audio(data: bytes) -> tuple[np.ndarray, int]:
    # Streamed files do not know their length up front: read block by block.
    with soundfile.SoundFile(io.BytesIO(data)) as file:
        blocks = list(file.blocks(blocksize=65536, dtype="float32"))
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32), file.samplerate


def assert_same_wav(first: bytes, second: bytes) -> None:
    """Same length, and samples within one int16 step.

    Greedy tokens do not depend on what shares the batch; the frames' floats do, by a few 1e-6
    (matmul blocking changes with the batch size), which can move an int16 sample by one step.
    """
    a, b = np.frombuffer(first[44:], "<i2"), np.frombuffer(second[44:], "<i2")
    assert len(a) == len(b)
    assert np.abs(a.astype(int) - b).max() <= 1


def test_health_and_models(server, client):
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"
    # The engine's settings, which `soprano synth` compares with what it was asked for.
    assert (health["device"], health["backend"], health["dtype"], health["decoder_dtype"]) == (
        "cpu", "torch", "float32", "float32")
    ids = [model.id for model in client.models.list()]
    assert ids[0] == "tiny" and {"soprano", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= set(ids)


def test_speech_create_wav(client):
    response = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there. How are you?",
                                          response_format="wav")
    audio, rate = wav_audio(response.content)
    assert rate == 32000
    assert len(audio) > 32000 * 0.5 and np.abs(audio).max() > 0


def test_pcm_is_24k_s16le_by_default(client):
    pcm = client.audio.speech.create(model="soprano", voice="x", input="Hello there.", response_format="pcm").content
    wav = client.audio.speech.create(model="soprano", voice="x", input="Hello there.", response_format="wav").content
    native, _ = wav_audio(wav)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert len(pcm) % 2 == 0
    assert abs(len(samples) - round(len(native) * 24000 / 32000)) <= 2


def test_sample_rate_extension(client):
    pcm = client.audio.speech.create(model="soprano", voice="x", input="Hello there.", response_format="pcm",
                                     extra_body={"sample_rate": 32000}).content
    wav = client.audio.speech.create(model="soprano", voice="x", input="Hello there.", response_format="wav").content
    native, _ = wav_audio(wav)
    assert len(pcm) // 2 == len(native)
    assert np.array_equal(np.frombuffer(pcm, dtype="<i2"), np.rint(native * 32768).astype(np.int16))


# aac is encoded by ffmpeg; the streamed flac is read back by it.
@pytest.mark.parametrize("fmt", ["mp3", pytest.param("flac", marks=needs("ffmpeg")), "opus",
                                 pytest.param("aac", marks=needs("ffmpeg"))])
def test_compressed_formats(client, fmt):
    data = client.audio.speech.create(model="soprano", voice="x", input="Hello there.", response_format=fmt).content
    assert len(data) > 100
    if fmt == "flac":
        # A streamed FLAC lacks its total length, which libsndfile cannot read; ffmpeg can.
        decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-f", "f32le", "-"], input=data,
                                 capture_output=True, check=True).stdout
        assert len(decoded) // 4 > 1000
        assert data[:4] == b"fLaC"
    elif fmt == "opus":
        assert data[:4] == b"OggS"
    elif fmt == "mp3":
        assert data[:3] == b"ID3" or data[0] == 0xFF


def test_streaming_response_arrives_in_pieces(client):
    text = " ".join(TEXTS[:6])
    pieces = []
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=text,
                                                            response_format="pcm") as response:
        assert response.headers["content-type"].startswith("audio/pcm")
        for piece in response.iter_bytes():
            pieces.append(piece)
    whole = client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="pcm").content
    assert len(pieces) > 3
    assert b"".join(pieces) == whole


def test_sse_stream(server):
    body = {"model": "soprano", "input": "Hello there. How are you?", "response_format": "pcm",
            "stream_format": "sse"}
    events = []
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["type"] == "speech.audio.done" and "usage" in events[-1]
    deltas = [e for e in events[:-1] if e["type"] != "speech.audio.sentence"]  # timing: test_server_timing.py
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    plain = httpx.post(server.url + "/v1/audio/speech", json={**body, "stream_format": "audio"}, timeout=30).content
    assert audio == plain


def test_sampling_extensions_are_reproducible(client):
    extra = {"temperature": 1.0, "top_p": 1.0, "repetition_penalty": 1.2, "seed": 1234}
    first = client.audio.speech.create(model="soprano", voice="x", input="Hello there.", response_format="wav",
                                       extra_body=extra).content
    second = client.audio.speech.create(model="soprano", voice="x", input="Hello there.", response_format="wav",
                                        extra_body=extra).content
    greedy = client.audio.speech.create(model="soprano", voice="x", input="Hello there.", response_format="wav").content
    assert first == second and first != greedy


def test_normalize_extension(client):
    spoken = client.audio.speech.create(model="soprano", voice="x", input="I have 3 cats.", response_format="wav",
                                        extra_body={"normalize": True}).content
    words = client.audio.speech.create(model="soprano", voice="x", input="I have three cats.",
                                       response_format="wav").content
    assert spoken == words


def test_sixteen_concurrent_clients_equal_sequential(server, client):
    def speak(text):
        return client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav").content

    sequential = [speak(text) for text in TEXTS]
    steps_before = server.metric("soprano_decode_steps_total")
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(speak, TEXTS))
    steps = server.metric("soprano_decode_steps_total") - steps_before
    for alone, shared in zip(sequential, concurrent):
        assert_same_wav(alone, shared)
    # Shared batches: far fewer LM steps than the frames of all sixteen one after another.
    frames = sum(len(wav_audio(data)[0]) // 2048 for data in sequential)
    assert steps < frames / 3, (steps, frames)


def test_disconnect_mid_stream_cancels_work(server):
    long_text = " ".join(TEXTS * 3)
    cancelled = server.metric("soprano_requests_cancelled_total")
    body = {"model": "soprano", "input": long_text, "response_format": "pcm"}
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, timeout=30) as response:
        first = next(response.iter_raw())
        assert first
    # The client is gone: the work stops long before the ~48 sentences could have been generated.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if (server.metric("soprano_requests_cancelled_total") > cancelled
                and server.metric("soprano_active_sequences") == 0 and server.metric("soprano_queue_depth") == 0):
            break
        time.sleep(0.02)
    assert server.metric("soprano_requests_cancelled_total") == cancelled + 1
    assert server.metric("soprano_active_sequences") == 0
    # And the server still serves.
    assert httpx.post(server.url + "/v1/audio/speech", json={**body, "input": "Hi."}, timeout=30).status_code == 200


def test_metrics_content(server, client):
    client.audio.speech.create(model="soprano", voice="x", input="Hello.", response_format="wav")
    text = httpx.get(server.url + "/metrics").text
    for name in ("soprano_requests_total", "soprano_errors_total", "soprano_audio_seconds_total",
                 "soprano_real_time_factor", "soprano_queue_depth", "soprano_time_to_first_byte_seconds_count",
                 "soprano_requests_in_flight"):
        assert f"# TYPE {name.removesuffix('_count')} " in text, name
    assert 'soprano_requests_total{route="/v1/audio/speech",status="200"}' in text
    assert server.metric("soprano_audio_seconds_total") > 0
    assert 0 < server.metric("soprano_real_time_factor") < 100


def test_web_page_is_served(server):
    response = httpx.get(server.url + "/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assert "/v1/audio/speech" in response.text


def test_unix_socket_permissions_and_http(server):
    path = server.socket_path
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, base_url="http://soprano") as unix_client:
        assert unix_client.get("/health").json()["status"] == "ok"
        response = unix_client.post("/v1/audio/speech", json={"model": "soprano", "input": "Hi.",
                                                               "response_format": "wav"}, timeout=30)
        assert response.status_code == 200 and response.content[:4] == b"RIFF"


def test_cors_is_off_by_default(server):
    response = httpx.get(server.url + "/health", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(server.url + "/v1/audio/speech",
                              headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_first_streamed_byte_comes_early(server):
    """The stream starts with the first chunk, not when the whole text is done."""
    body = {"model": "soprano", "input": " ".join(TEXTS[:8]), "response_format": "pcm"}
    started = time.perf_counter()
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, timeout=30) as response:
        iterator = response.iter_raw()
        next(iterator)
        first = time.perf_counter() - started
        for _ in iterator:
            pass
        total = time.perf_counter() - started
    assert first < total / 2, (first, total)


def test_threaded_requests_do_not_interfere_with_each_other_outputs(client):
    """A later sentence's chunks never overtake an earlier one's (order inside one request)."""
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    alone = client.audio.speech.create(model="soprano", voice="x", input=text, response_format="wav").content
    results = {}

    def run(i):
        results[i] = client.audio.speech.create(model="soprano", voice="x", input=text if i == 0 else TEXTS[i],
                                                response_format="wav").content

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert_same_wav(results[0], alone)


def test_normalization_options_lay_over_the_servers():
    # Issue 18: a request's normalization_options override the server's choices field by field.
    from soprano_cli.server.protocol import SpeechRequest, request_text_options
    from soprano_cli.text import TextOptions, normalize
    from soprano_cli.text.lexicon import parse

    server = TextOptions(markdown=True, lexicon=parse("Nguyen\tWin\n"))
    plain = SpeechRequest(model="soprano", input="x")
    assert request_text_options(server, plain.normalization_options) is server
    body = SpeechRequest(model="soprano", input="x", normalization_options={
        "markdown": False, "urls": False, "lexicon": {"kubectl": "cube control"}})
    options = request_text_options(server, body.normalization_options)
    assert normalize("**Nguyen** ran kubectl at www.x.io", options) == "**Win** ran cube control at www.x.io"


def test_normalization_options_on_a_live_server(server, client):
    # Issue 18: the request's options reach normalize in the running server: a lexicon word is
    # spoken as its replacement, and an unknown option is refused as OpenAI clients expect.
    def speak(text, **extra):
        return client.audio.speech.create(model="soprano", voice="x", input=text, response_format="wav",
                                          extra_body=extra or None).content

    assert speak("Nguyen is here.", normalization_options={"lexicon": {"Nguyen": "Win"}}) == speak("Win is here.")
    assert speak("**Hello** there.", normalization_options={"markdown": True}) == speak("Hello there.")
    with pytest.raises(openai.BadRequestError) as refused:
        speak("Hello there.", normalization_options={"shout": True})
    assert "normalization_options" in str(refused.value)


# -- what clients written for OpenAI (or Open WebUI, Kokoro-FastAPI) look up ------------------------


def test_voices_list_sopranos_voice_and_maps_openais_names(client):
    voices = client.get("/audio/voices", cast_to=object)
    assert [voice["id"] for voice in voices["voices"]] == ["soprano"] and voices["default"] == "soprano"
    # Open WebUI reads {id: name} from this list.
    assert {voice["id"]: voice["name"] for voice in voices["voices"]} == {"soprano": "soprano"}
    assert "en-US" in voices["voices"][0]["languages"]
    openai_names = {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
    assert openai_names <= set(voices["aliases"]) and set(voices["aliases"].values()) == {"soprano"}


def test_every_voice_name_and_instructions_give_the_same_audio(client):
    def speak(**options) -> bytes:
        return client.audio.speech.create(model="gpt-4o-mini-tts", input="Hello there.", response_format="pcm",
                                          **options).content

    alloy = speak(voice="alloy")
    assert len(alloy) > 0
    # One voice: OpenAI's names, its own, one it never heard of, and gpt-4o-mini-tts's steering text
    # (accepted, ignored) change nothing.
    for options in ({"voice": "coral"}, {"voice": "soprano"}, {"voice": "no-such-voice"},
                    {"voice": "alloy", "instructions": "Speak like a pirate."}):
        assert speak(**options) == alloy, options


def test_models_list_and_retrieve(server, client):
    ids = [model.id for model in client.models.list()]
    assert ids[0] == "tiny" and ids[1:] == ["soprano", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
    for name in ids:
        assert client.models.retrieve(name).id == name
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-5")
    assert missing.value.body["code"] == "model_not_found"
