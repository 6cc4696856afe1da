"""A daemon on a desktop: hostile web pages, DNS rebinding, malformed and oversized requests, keys.

Every request here is one a browser or a script on the same machine can send; each used to be
answered (200, a text/plain 500, a traceback in the log) and is now refused in OpenAI's shape.
"""

from __future__ import annotations

import io
import json
import socket
import time

import httpx
import pytest
from server_process import TINY_CHECKPOINT
from test_server_errors import GOOD, KEY, SPEECH, assert_error

STREAM = "/v1/soprano/stream"


def raw_exchange(server, data: bytes, *, timeout: float = 10.0, close_after_send: bool = False) -> bytes:
    """Send raw bytes on a fresh connection; return everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        if close_after_send:
            return b""
        parts = []
        while True:
            try:
                part = sock.recv(65536)
            except TimeoutError:
                break
            if not part:
                break
            parts.append(part)
        return b"".join(parts)


def json_error(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)["error"]


# -- what a web page can send -------------------------------------------------------------------


@pytest.mark.parametrize("content_type,content", [
    ("text/plain", json.dumps(GOOD)),  # a "simple" cross-site request: no preflight
    ("application/x-www-form-urlencoded", json.dumps(GOOD)),
    ("multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=a\r\n\r\n" + json.dumps(GOOD)),
    (None, json.dumps(GOOD)),
])
def test_bodies_a_browser_sends_cross_site_are_refused(server, content_type, content):
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.post(server.url + SPEECH, content=content.encode(), headers=headers)
    assert_error(response, 415, None, "unsupported_media_type")


def test_json_with_a_charset_is_json(server):
    response = httpx.post(server.url + SPEECH, content=json.dumps(GOOD).encode(), timeout=30,
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200 and response.content[:4] == b"RIFF"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}", "tts.example"])
def test_a_rebound_host_name_is_refused(server, host):
    # DNS rebinding: the attacker's name resolves to 127.0.0.1, so the browser sends its name as Host.
    for path in ("/health", "/v1/models", "/"):
        response = httpx.get(server.url + path, headers={"Host": host.format(port=server.port)})
        assert_error(response, 421, None, "misdirected_request")
    response = httpx.post(server.url + SPEECH, json=GOOD, headers={"Host": host.format(port=server.port)})
    assert_error(response, 421, None, "misdirected_request")


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "LOCALHOST", "app.localhost:{port}",
                                  "[::1]:{port}", "127.0.0.2"])
def test_loopback_names_and_addresses_are_answered(server, host):
    assert httpx.get(server.url + "/health", headers={"Host": host.format(port=server.port)}).status_code == 200


def test_allowed_host_names_are_answered(strict_server):
    headers = {"Host": f"tts.example:{strict_server.port}", **KEY}
    assert httpx.get(strict_server.url + "/v1/models", headers=headers).status_code == 200
    assert_error(httpx.get(strict_server.url + "/v1/models", headers={**headers, "Host": "other.example"}), 421)


def test_other_sites_pages_are_refused(server):
    response = httpx.post(server.url + SPEECH, json=GOOD, headers={"Origin": "http://evil.example"})
    assert_error(response, 403, None, "cross_origin_forbidden")
    # Its own page is same-origin, whichever loopback name the user typed.
    for origin in (server.url, f"http://localhost:{server.port}"):
        host = origin.removeprefix("http://")
        response = httpx.post(server.url + SPEECH, json=GOOD, timeout=30, headers={"Origin": origin, "Host": host})
        assert response.status_code == 200


def test_preflight_refusals_are_json(server, strict_server):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    refused = httpx.options(server.url + SPEECH, headers=preflight)
    assert_error(refused, 403, None, "cross_origin_forbidden")
    assert "access-control-allow-origin" not in refused.headers
    refused = httpx.options(strict_server.url + SPEECH, headers=preflight)  # CORS on, but not for this origin
    assert_error(refused, 400, None, "cors_forbidden")
    assert "access-control-allow-origin" not in refused.headers


def test_an_allowed_origin_may_post(strict_server):
    response = httpx.post(strict_server.url + SPEECH, json=GOOD, timeout=30,
                          headers={"Origin": "http://allowed.example", **KEY})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://allowed.example"


# -- malformed and oversized requests -----------------------------------------------------------


def test_a_declared_huge_body_is_refused_before_it_is_sent(server):
    started = time.monotonic()
    answer = raw_exchange(server, b"POST /v1/audio/speech HTTP/1.1\r\nHost: localhost\r\n"
                                  b"Content-Type: application/json\r\nContent-Length: 300000000\r\n\r\n{")
    status, error = json_error(answer)
    assert status == 413 and error["code"] == "request_too_large"
    assert time.monotonic() - started < 5


def test_a_chunked_body_over_the_limit_is_refused(server):
    def chunks():
        for _ in range(40):
            yield b" " * 65536

    response = httpx.post(server.url + SPEECH, content=chunks(), headers={"Content-Type": "application/json"},
                          timeout=30)
    assert_error(response, 413, None, "request_too_large")


def test_deeply_nested_json_is_a_400(server):
    response = httpx.post(server.url + SPEECH, content=b"[" * 100000, headers={"Content-Type": "application/json"})
    assert_error(response, 400, None, "invalid_json")


def test_malformed_http_is_answered_in_json(server):
    status, error = json_error(raw_exchange(server, b"GARBAGE\r\n\r\n"))
    assert status == 400 and error["code"] == "invalid_http_request"


def test_a_client_leaving_mid_body_is_no_server_error(server):
    before = server.log().count("Traceback")
    errors = speech_requests(server, "500")
    left = speech_requests(server, "499")
    raw_exchange(server, b"POST /v1/audio/speech HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"model\"", close_after_send=True)
    deadline = time.monotonic() + 10
    while speech_requests(server, "499") == left and time.monotonic() < deadline:
        time.sleep(0.05)
    assert speech_requests(server, "499") == left + 1
    assert speech_requests(server, "500") == errors
    assert server.log().count("Traceback") == before


def speech_requests(server, status: str) -> float:
    try:
        return server.metric(f'soprano_requests_total{{route="/v1/audio/speech",status="{status}"}}')
    except KeyError:
        return 0.0


# -- /v1/soprano/stream's own limits -------------------------------------------------------------


@pytest.mark.parametrize("change,param", [
    ({"start_index": 2**32}, "start_index"),  # the frame header holds 32 bits: it broke the stream mid-way
    ({"sentences": ["Hi."] * 65}, "sentences"),  # thousands of sentences stalled everyone else
    ({"sentences": ["Hi.", "\U0001F600\U0001F600"]}, "sentences"),  # nothing to speak: an empty prompt
    ({"sentences": ["\x01\x02"]}, "sentences"),
])
def test_stream_limits(server, change, param):
    assert_error(httpx.post(server.url + STREAM, json={"sentences": ["Hi."], **change}), 400, param)


def test_the_largest_start_index_streams(server):
    from soprano_cli.server.protocol import MAX_SENTENCE_INDEX, MAX_STREAM_SENTENCES, read_frames

    start = MAX_SENTENCE_INDEX - MAX_STREAM_SENTENCES
    response = httpx.post(server.url + STREAM, json={"sentences": ["Hi."], "start_index": start}, timeout=30)
    assert response.status_code == 200
    frames = list(read_frames(io.BytesIO(response.content).read))
    assert frames and {frame.sentence for frame in frames} == {start}



# -- what the server reveals -------------------------------------------------------------------


def test_health_reveals_no_paths(server):
    text = httpx.get(server.url + "/health").text
    assert str(TINY_CHECKPOINT) not in text and "/" not in json.loads(text)["model_digest"]
    assert str(TINY_CHECKPOINT.parent) not in text


def test_a_key_from_a_file_is_not_on_the_command_line(strict_server):
    with open(f"/proc/{strict_server.process.pid}/cmdline", "rb") as cmdline:
        assert b"sekrit" not in cmdline.read()
