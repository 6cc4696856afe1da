"""OpenAI-shaped errors with the right status for every bad request; the API key; CORS; 429."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

SPEECH = "/v1/audio/speech"
GOOD = {"model": "soprano", "input": "Hello there.", "response_format": "wav"}


def assert_error(response: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


@pytest.mark.parametrize(
    ("content", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        (b"\xff\xfe", None, "invalid_json"),
    ],
)
def test_malformed_json(server, content, param, code):
    response = httpx.post(server.url + SPEECH, content=content, headers={"Content-Type": "application/json"})
    assert_error(response, 400, param, code)


@pytest.mark.parametrize(
    ("change", "status", "param"),
    [
        ({"input": None}, 400, "input"),  # missing (None values are dropped below)
        ({"input": ""}, 400, "input"),
        ({"input": "   \n\t "}, 400, "input"),
        ({"input": 5}, 400, "input"),
        ({"input": "a" * 4097}, 400, "input"),
        ({"model": None}, 400, "model"),
        ({"response_format": "xyz"}, 400, "response_format"),
        ({"stream_format": "xml"}, 400, "stream_format"),
        ({"speed": 0.2}, 400, "speed"),
        ({"speed": 10}, 400, "speed"),
        ({"speed": "fast"}, 400, "speed"),
        ({"volume_multiplier": -0.5}, 400, "volume_multiplier"),
        ({"volume_multiplier": 11}, 400, "volume_multiplier"),
        ({"loudness": 3}, 400, "loudness"),
        ({"loudness": -100}, 400, "loudness"),
        ({"input": "<speak>Hello"}, 400, "input"),  # SSML that is not well-formed
        ({"input": '<speak>Hi<break time="a while"/></speak>'}, 400, "input"),
        ({"input": '<!DOCTYPE speak [<!ENTITY a "b">]><speak>&a;</speak>'}, 400, "input"),
        ({"input": "Wait [pause:60s] here."}, 400, "input"),
        ({"temperature": 9}, 400, "temperature"),
        ({"temperature": -1}, 400, "temperature"),
        ({"top_p": 0}, 400, "top_p"),
        ({"top_p": 1.5}, 400, "top_p"),
        ({"repetition_penalty": 0}, 400, "repetition_penalty"),
        ({"seed": -1}, 400, "seed"),
        ({"seed": "abc"}, 400, "seed"),
        ({"max_new_tokens": 0}, 400, "max_new_tokens"),
        ({"max_new_tokens": 513}, 400, "max_new_tokens"),
        ({"sample_rate": 1000}, 400, "sample_rate"),
        ({"sample_rate": 0}, 400, "sample_rate"),  # not "the default"
        ({"response_format": "opus", "sample_rate": 32000}, 400, "sample_rate"),
        ({"normalize": "maybe"}, 400, "normalize"),
        # normalization_options: each field checked, unknown ones refused, lexicon entries bounded.
        ({"normalization_options": "yes"}, 400, "normalization_options"),
        ({"normalization_options": {"urls": "maybe"}}, 400, "normalization_options.urls"),
        ({"normalization_options": {"colour": True}}, 400, "normalization_options.colour"),
        ({"normalization_options": {"lexicon": {"x": "a" * 300}}}, 400, "normalization_options.lexicon"),
        ({"normalization_options": {"lexicon": ["x"]}}, 400, "normalization_options.lexicon"),
    ],
)
def test_bad_parameters(server, change, status, param):
    body = {key: value for key, value in {**GOOD, **change}.items() if value is not None}
    error = assert_error(httpx.post(server.url + SPEECH, json=body, timeout=30), status, param)
    assert error["type"] == "invalid_request_error"


def test_input_limit_boundary(server):
    # Exactly at the limit is accepted (it is long, so only the start of the stream is read).
    with httpx.stream("POST", server.url + SPEECH, json={**GOOD, "input": "la " * 1365 + "a"}, timeout=30) as response:
        assert response.status_code == 200


@pytest.mark.parametrize("model", ["no-such-model", "/etc/passwd", "../tiny", "ekwek/Soprano-1.1-80M"])
def test_unknown_model_is_404_and_never_opened(server, model):
    error = assert_error(httpx.post(server.url + SPEECH, json={**GOOD, "model": model}), 404, "model",
                         "model_not_found")
    assert "tiny" in error["message"]


def test_unknown_route_and_method(server):
    assert_error(httpx.get(server.url + "/v1/nothing"), 404)
    assert_error(httpx.get(server.url + SPEECH), 405)


def test_errors_through_the_openai_client(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=5.0)
    assert caught.value.status_code == 400 and caught.value.body["param"] == "speed"
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="gpt-5", voice="alloy", input="Hi.")
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="")


def test_error_metrics(server):
    before = server.metric('soprano_errors_total{type="invalid_request_error"}')
    httpx.post(server.url + SPEECH, json={**GOOD, "input": ""})
    assert server.metric('soprano_errors_total{type="invalid_request_error"}') == before + 1


# -- the strict server: --api-key sekrit --max-batch 1 --max-queue 1 --max-input-chars 2000 ----------

KEY = {"Authorization": "Bearer sekrit"}


@pytest.mark.parametrize("path", ["/metrics", "/v1/models"])
def test_every_route_but_the_page_and_health_needs_the_key(strict_server, path):
    assert_error(httpx.get(strict_server.url + path), 401, None, "invalid_api_key")
    assert_error(httpx.get(strict_server.url + path, headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(httpx.get(strict_server.url + path, headers={"Authorization": "sekrit"}), 401)
    assert httpx.get(strict_server.url + path, headers=KEY).status_code == 200


def test_health_and_the_web_page_need_no_key(strict_server):
    assert httpx.get(strict_server.url + "/health").status_code == 200
    page = httpx.get(strict_server.url + "/")  # it asks for the key itself
    assert page.status_code == 200 and "api_key" in page.text


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_auth_scheme_is_case_insensitive(strict_server, scheme):
    assert httpx.get(strict_server.url + "/v1/models", headers={"Authorization": f"{scheme} sekrit"}).status_code == 200


def test_speech_with_and_without_key(strict_server):
    response = httpx.post(strict_server.url + SPEECH, json=GOOD)
    assert_error(response, 401, None, "invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.post(strict_server.url + SPEECH, json=GOOD, headers=KEY, timeout=30).status_code == 200
    wrong = openai.OpenAI(base_url=strict_server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    right = openai.OpenAI(base_url=strict_server.url + "/v1", api_key="sekrit", max_retries=0)
    assert right.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="wav").content


def test_configured_input_limit(strict_server):
    assert_error(httpx.post(strict_server.url + SPEECH, json={**GOOD, "input": "a" * 2001}, headers=KEY), 400, "input")


def test_cors_only_for_the_configured_origin(strict_server):
    allowed = httpx.options(strict_server.url + SPEECH, headers={"Origin": "http://allowed.example",
                                                                 "Access-Control-Request-Method": "POST",
                                                                 "Access-Control-Request-Headers": "authorization"})
    assert allowed.headers.get("access-control-allow-origin") == "http://allowed.example"
    other = httpx.options(strict_server.url + SPEECH, headers={"Origin": "http://evil.example",
                                                               "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers


def test_full_queue_answers_429(strict_server):
    """One sentence at a time and one waiting request: a burst of long requests overflows."""
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)
    statuses: list[int] = []
    bodies: list[dict] = []
    lock = threading.Lock()

    def post():
        response = httpx.post(strict_server.url + SPEECH, json={**GOOD, "input": text}, headers=KEY, timeout=120)
        with lock:
            statuses.append(response.status_code)
            if response.status_code != 200:
                bodies.append(response.json())

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 429 in statuses and 200 in statuses and set(statuses) <= {200, 429}, statuses
    assert all(body["error"]["type"] == "rate_limit_error" for body in bodies)
    assert all(body["error"]["code"] == "rate_limit_exceeded" for body in bodies)
    client = openai.OpenAI(base_url=strict_server.url + "/v1", api_key="sekrit", max_retries=0)
    assert client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="wav").content
