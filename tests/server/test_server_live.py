"""The live text WebSocket (`/v1/audio/speech/stream`) against a real server, through the `websockets` client."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
import torch
from server_process import ServerProcess
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from soprano_cli.engine.quantize import use_fbgemm

SENTENCES = ["Hello there.", "How are you today?", "The quick brown fox jumps."]
TEXT = " ".join(SENTENCES)
# int8 is batch-invariant (tests/server/test_server_batch_invariance.py): a sentence's bytes do not depend on
# what shares the batch, which differs between a live stream and one request. float32 keeps a bound.
EXACT = use_fbgemm(torch.device("cpu"))


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """A server with a short idle timeout for the live stream, and short HTTP deadlines (3 s for a body)."""
    process = ServerProcess(tmp_path_factory.mktemp("live"), "--live-idle-timeout", "2", "--request-timeout", "1",
                            *(["--dtype", "int8"] if EXACT else [])).start()
    yield process
    process.stop()


def assert_same_audio(live: bytes, reference: bytes) -> None:
    if EXACT:
        assert live == reference
        return
    a, b = np.frombuffer(live, "<i2").astype(int), np.frombuffer(reference, "<i2").astype(int)
    assert len(a) == len(b) and np.abs(a - b).max() <= 16


def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/audio/speech/stream"


def open_ws(server, **kwargs):
    return connect(ws_url(server), proxy=None, compression=None, max_size=None, **kwargs)


def text(kind: str, **fields) -> str:
    return json.dumps({"type": kind, **fields})


async def receive_all(ws) -> tuple[list[dict], list[tuple[int | None, bytes]]]:
    """Every message until the server closes: the JSON ones, and the audio with the sentence it came under."""
    markers, audio, current = [], [], None
    try:
        async for message in ws:
            if isinstance(message, bytes):
                audio.append((current, message))
            else:
                marker = json.loads(message)
                markers.append(marker)
                if marker["type"] == "sentence.start":
                    current = marker["index"]
    except ConnectionClosedError:  # closed with an error code: ws.close_code says which
        pass
    return markers, audio


def speech(server, text: str, **extra) -> bytes:
    body = {"model": "soprano", "input": text, "response_format": "pcm", **extra}
    answer = httpx.post(server.url + "/v1/audio/speech", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.content


def test_deltas_become_sentences_with_the_audio_of_the_speech_endpoint(live_server):
    async def main():
        async with open_ws(live_server) as ws:
            for i in range(0, len(TEXT), 3):  # pieces that cut words, as a model's deltas do
                await ws.send(text("text", text=TEXT[i:i + 3]))
            await ws.send(text("close"))
            markers, audio = await receive_all(ws)
            return markers, audio, ws.close_code

    markers, audio, code = asyncio.run(main())
    assert code == 1000
    assert markers[0] == {"type": "session", "model": "tiny", "format": "pcm", "sample_rate": 24000}
    assert markers[-1] == {"type": "done"}
    starts = [m for m in markers if m["type"] == "sentence.start"]
    ends = [m for m in markers if m["type"] == "sentence.end"]
    assert [m["text"] for m in starts] == [m["text"] for m in ends] == SENTENCES
    assert [m["index"] for m in ends] == [0, 1, 2]
    assert ends[0]["start"] == 0.0 and all(a["end"] == b["start"] for a, b in zip(ends, ends[1:]))
    # The whole stream is /v1/audio/speech's pcm for the same sentences (each its own paragraph).
    assert_same_audio(b"".join(data for _, data in audio), speech(live_server, "\n\n".join(SENTENCES)))
    # At the model's rate nothing is held back: each sentence's bytes come between its markers, where its cue says.
    async def exact():
        async with open_ws(live_server) as ws:
            await ws.send(text("start", sample_rate=32000))
            await ws.send(text("text", text=TEXT))
            await ws.send(text("close"))
            return await receive_all(ws)

    markers, audio = asyncio.run(exact())
    whole = speech(live_server, "\n\n".join(SENTENCES), sample_rate=32000)
    assert_same_audio(b"".join(data for _, data in audio), whole)
    for cue in (m for m in markers if m["type"] == "sentence.end"):
        alone = b"".join(data for owner, data in audio if owner == cue["index"])
        assert_same_audio(alone, whole[round(cue["start"] * 64000):round(cue["end"] * 64000)])


def test_flush_ends_a_turn_and_the_connection_goes_on(live_server):
    async def main():
        async with open_ws(live_server) as ws:
            await ws.send(text("start", input="An answer without a final stop"))
            await ws.send(text("flush"))
            turn, audio = [], b""
            while not turn or turn[-1].get("type") != "flushed":
                message = await ws.recv()
                if isinstance(message, bytes):
                    audio += message
                else:
                    turn.append(json.loads(message))
            await ws.send(text("text", text="A second answer.\n"))
            await ws.send(text("close"))
            rest, more = await receive_all(ws)
            return turn, audio, rest, more

    turn, audio, rest, more = asyncio.run(main())
    assert [m["type"] for m in turn] == ["session", "sentence.start", "sentence.end", "flushed"]
    assert_same_audio(audio, speech(live_server, "An answer without a final stop"))
    assert [m["type"] for m in rest] == ["sentence.start", "sentence.end", "done"]
    assert rest[0]["index"] == 1 and rest[1]["start"] == turn[2]["end"]
    assert_same_audio(b"".join(data for _, data in more), speech(live_server, "A second answer."))


def test_a_sentence_is_spoken_as_soon_as_it_is_complete(live_server):
    """The first audio of a sentence follows the delta that completes it closely (benchmarks/bench_server.py
    measures it; this bound only catches a sentence left waiting for more text or for the end)."""
    async def main():
        async with open_ws(live_server) as ws:
            await ws.send(text("text", text="Hello there."))
            assert json.loads(await ws.recv())["type"] == "session"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.5)  # "there." may still be "there.5": nothing yet
            sent = time.perf_counter()
            await ws.send(text("text", text=" How "))
            start = json.loads(await ws.recv())
            audio = await ws.recv()
            return start, audio, time.perf_counter() - sent

    start, audio, latency = asyncio.run(main())
    assert start["type"] == "sentence.start" and start["text"] == "Hello there."
    assert isinstance(audio, bytes) and audio
    assert latency < 2.0, latency


def test_cross_origin_pages_and_wrong_hosts_are_refused(live_server):
    async def status(**kwargs):
        try:
            async with open_ws(live_server, **kwargs):
                return 101, None
        except InvalidStatus as refused:
            return refused.response.status_code, json.loads(refused.response.body or b"null")

    code, body = asyncio.run(status(origin="http://evil.example"))
    assert code == 403 and body["error"]["code"] == "cross_origin_forbidden"
    async def rebound():  # a page's own name, rebound to 127.0.0.1 (DNS rebinding)
        url = f"ws://rebound.example:{live_server.port}/v1/audio/speech/stream"
        try:
            async with connect(url, proxy=None, host="127.0.0.1", port=live_server.port):
                return 101, None
        except InvalidStatus as refused:
            return refused.response.status_code, json.loads(refused.response.body)

    code, body = asyncio.run(rebound())
    assert code == 421 and body["error"]["code"] == "misdirected_request"
    # The page the server itself serves may connect.
    assert asyncio.run(status(origin=live_server.url))[0] == 101


def test_the_api_key_and_allowed_origin_apply(strict_server):
    async def status(**kwargs):
        try:
            async with open_ws(strict_server, **kwargs) as ws:
                await ws.send(text("close"))
                return 101, [json.loads(m) for m in [await ws.recv()]]
        except InvalidStatus as refused:
            return refused.response.status_code, json.loads(refused.response.body)

    code, body = asyncio.run(status())
    assert code == 401 and body["error"]["code"] == "invalid_api_key"
    key = {"Authorization": "Bearer sekrit"}
    assert asyncio.run(status(additional_headers=key, origin="http://evil.example"))[0] == 403
    code, markers = asyncio.run(status(additional_headers=key, origin="http://allowed.example"))
    assert code == 101 and markers[0]["type"] == "session"


@pytest.mark.parametrize("messages, close_code, error_code", [
    (["{not json"], 1008, "invalid_json"),
    (["[1, 2]"], 1008, "invalid_json"),
    ([b"\x00\x01binary"], 1003, "unsupported_data"),
    ([text("shout", text="hi")], 1008, "invalid_value"),
    ([json.dumps({"type": "text", "text": 5})], 1008, "invalid_type"),
    ([text("text", text="Hi."), text("start")], 1008, "invalid_value"),
    ([text("start", temperature="hot")], 1008, "invalid_value"),
    ([text("start", model="gpt-5")], 1008, "model_not_found"),
    ([text("start", response_format="mp3")], 1008, "unsupported_value"),
    ([text("start", sample_rate=5)], 1008, "invalid_value"),
    # Text after "close", while its sentences are still being spoken: enough of them that the server
    # cannot have finished and closed before "late" arrives (with one short sentence it sometimes had).
    ([text("text", text="Hello there. " * 12), text("close"), text("text", text="late")], 1008, "invalid_value"),
    (["x" * 16385], 1009, "message_too_large"),
])
def test_bad_messages_get_an_error_and_a_close_code(live_server, messages, close_code, error_code):
    async def main():
        async with open_ws(live_server) as ws:
            for message in messages:
                await ws.send(message)
            markers, _ = await receive_all(ws)
            return markers, ws.close_code

    markers, code = asyncio.run(main())
    errors = [m for m in markers if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["error"]["code"] == error_code, markers
    assert set(errors[0]["error"]) == {"message", "type", "param", "code"}
    assert code == close_code


def test_oversize_is_refused(live_server):
    async def huge():
        async with open_ws(live_server) as ws:
            await ws.send("x" * (1 << 20))  # past what the server reads at all
            await receive_all(ws)
            return ws.close_code

    assert asyncio.run(huge()) == 1009

    async def too_much_text():
        async with open_ws(live_server) as ws:
            piece = text("text", text="!! " * 5000)  # no words: cheap to split, nothing to speak
            for _ in range(20):
                await ws.send(piece)
            markers, _ = await receive_all(ws)
            return markers, ws.close_code

    markers, code = asyncio.run(too_much_text())
    assert markers[-1]["error"]["code"] == "string_above_max_length" and code == 1009


def test_an_idle_connection_is_closed(live_server):
    async def main():
        async with open_ws(live_server) as ws:
            await ws.send(text("start"))
            started = time.perf_counter()
            markers, _ = await receive_all(ws)
            return markers, ws.close_code, time.perf_counter() - started

    markers, code, waited = asyncio.run(main())
    assert markers[-1]["error"]["code"] == "idle_timeout" and code == 1008
    assert 1.5 < waited < 10


def test_a_connection_outlives_the_http_deadlines(live_server):
    # Broke: the upgrade request's body deadline (3 s here) stayed armed and closed the WebSocket.
    async def main():
        async with open_ws(live_server) as ws:
            await ws.send(text("start"))
            for word in ["One", " two", " three", " four", " five."]:
                await asyncio.sleep(1.0)
                await ws.send(text("text", text=word))
            await ws.send(text("close"))
            markers, _ = await receive_all(ws)
            return markers, ws.close_code

    markers, code = asyncio.run(main())
    assert code == 1000 and markers[-1] == {"type": "done"}
    assert [m["text"] for m in markers if m["type"] == "sentence.end"] == ["One two three four five."]


def test_a_client_that_vanishes_cancels_its_sentences(live_server):
    sentences = [f"This is sentence number {n} of a long answer." for n in range(1, 13)]
    whole_frames = round(sum(len(speech(live_server, s)) for s in sentences) / 2 / 24000 / 0.064)

    async def main():
        ws = await open_ws(live_server)
        await ws.send(text("text", text=" ".join(sentences) + "\n"))
        while not isinstance(await ws.recv(), bytes):
            pass
        ws.transport.abort()  # gone without a close frame

    before = live_server.metric("soprano_frames_total")
    asyncio.run(main())
    deadline = time.monotonic() + 10
    while live_server.metric("soprano_active_sequences") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_server.metric("soprano_active_sequences") == 0
    made = live_server.metric("soprano_frames_total") - before
    assert made < whole_frames / 2, (made, whole_frames)
    time.sleep(0.5)
    assert live_server.metric("soprano_frames_total") - before == made  # nothing more after it left
