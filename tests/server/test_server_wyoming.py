"""`soprano serve --wyoming`: the `wyoming` package's own async client against a live server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import numpy as np
import pytest
from server_process import ServerProcess, free_port
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient, AsyncUnixClient
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

# Two sentences each long enough (over `split`'s two seconds) to be a chunk of its own, so the
# streamed path and the one-shot path speak the same chunks.
TEXT = "The kitchen lights are off now and the door is locked. I also set the thermostat to twenty degrees."


@pytest.fixture(scope="module")
def wyoming_server(tmp_path_factory):
    """HTTP and Wyoming on one engine; max-new-tokens is left at the API's default, as HTTP's."""
    port = free_port()
    process = ServerProcess(tmp_path_factory.mktemp("wyoming"), "--wyoming", f"tcp://127.0.0.1:{port}",
                            "--max-input-chars", "500", "--client-timeout", "2").start()
    process.wyoming_port = port
    yield process
    process.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def collect(client, *, until: str) -> list:
    events = []
    while True:
        event = await client.read_event()
        if event is None:
            return events
        events.append(event)
        if event.type == until or Error.is_type(event.type):
            return events


def audio_of(events) -> bytes:
    return b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type))


def http_pcm(server, text: str) -> bytes:
    response = httpx.post(server.url + "/v1/audio/speech", timeout=60,
                          json={"model": "soprano", "input": text, "response_format": "pcm", "sample_rate": 32000})
    assert response.status_code == 200, response.text
    return response.content


def test_describe_lists_one_streaming_english_voice(wyoming_server):
    async def describe():
        async with AsyncTcpClient("127.0.0.1", wyoming_server.wyoming_port) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await client.read_event())

    info = run(describe())
    assert len(info.tts) == 1
    program = info.tts[0]
    assert program.supports_synthesize_streaming and program.installed
    assert [voice.name for voice in program.voices] == ["soprano"]
    assert "en" in program.voices[0].languages
    assert program.voices[0].attribution.url.startswith("https://huggingface.co/ekwek/")


def test_synthesize_equals_the_http_api_pcm(wyoming_server):
    async def synthesize():
        async with AsyncTcpClient("127.0.0.1", wyoming_server.wyoming_port) as client:
            await client.write_event(Synthesize(text=TEXT).event())
            return await collect(client, until="audio-stop")

    events = run(synthesize())
    assert AudioStart.is_type(events[0].type) and AudioStop.is_type(events[-1].type)
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (32000, 2, 1)
    assert all(AudioChunk.is_type(e.type) for e in events[1:-1])
    audio = audio_of(events)
    assert len(audio) > 32000
    assert audio == http_pcm(wyoming_server, TEXT)
    # Timestamps count the milliseconds of audio before each event.
    assert AudioStop.from_event(events[-1]).timestamp == len(audio) // 2 * 1000 // 32000


def test_streamed_text_is_spoken_sentence_by_sentence(wyoming_server):
    # After the third part the first sentence is known complete: the next one has begun and is too
    # long (over two seconds) to join it, as `split` would have it.
    parts = ["The kitchen lights are ", "off now and the door", " is locked. I also set the thermostat to ",
             "twenty", " degrees."]

    async def stream():
        async with AsyncTcpClient("127.0.0.1", wyoming_server.wyoming_port) as client:
            await client.write_event(SynthesizeStart().event())
            for part in parts[:3]:
                await client.write_event(SynthesizeChunk(text=part).event())
            # Its audio comes before any more text.
            first = await collect(client, until="audio-stop")
            for part in parts[3:]:
                await client.write_event(SynthesizeChunk(text=part).event())
            await client.write_event(Synthesize(text=TEXT).event())  # Home Assistant repeats the text: ignored
            await client.write_event(SynthesizeStop().event())
            return first, await collect(client, until="synthesize-stopped")

    first, rest = run(stream())
    assert [e.type for e in first][0] == "audio-start" and first[-1].type == "audio-stop"
    assert [e.type for e in rest if not AudioChunk.is_type(e.type)] == ["audio-start", "audio-stop",
                                                                         "synthesize-stopped"]
    # Each sentence was its own job here and shared one with the other in HTTP's: in float32 the
    # batch moves a sample by about 1e-7 (README, batch invariance), an int16 rounding at most.
    streamed = np.frombuffer(audio_of(first + rest), "<i2").astype(int)
    whole = np.frombuffer(http_pcm(wyoming_server, TEXT), "<i2").astype(int)
    assert len(streamed) == len(whole)
    assert np.abs(streamed - whole).max() <= 1
    # The second sentence's timestamps go on from the first's end.
    assert AudioStart.from_event(rest[0]).timestamp == AudioStop.from_event(first[-1]).timestamp


def test_bad_input_gets_an_error_event(wyoming_server):
    async def ask(*events, raw: bytes = b""):
        async with AsyncTcpClient("127.0.0.1", wyoming_server.wyoming_port) as client:
            for event in events:
                await client.write_event(event)
            if raw:
                client._writer.write(raw)
            replies = await collect(client, until="error")
            assert await client.read_event() is None  # the server ends the connection after an error
            return replies[-1]

    cases = [
        ((Synthesize(text="   ").event(),), b"", "empty_input"),
        ((Synthesize(text="x" * 501).event(),), b"", "string_above_max_length"),
        ((SynthesizeChunk(text="hello").event(),), b"", "invalid_event"),
        ((SynthesizeStop().event(),), b"", "invalid_event"),
        ((SynthesizeStart().event(), SynthesizeStart().event()), b"", "invalid_event"),
        ((SynthesizeStart().event(), *[SynthesizeChunk(text="word " * 50).event()] * 3), b"",
         "string_above_max_length"),
        ((), b"not json\n", "invalid_event"),
        ((), b'{"type": "synthesize", "data": {"text": 5}}\n', "invalid_type"),
        ((), b'{"type": "synthesize", "data_length": 100000000}\n', "request_too_large"),
        ((), b'{"type": "synthesize", "payload_length": -1}\n', "invalid_event"),
        ((), b'{"type": "' + b"x" * 70000 + b'"}\n', "request_too_large"),
    ]
    for events, raw, code in cases:
        reply = run(ask(*events, raw=raw))
        assert Error.is_type(reply.type), (events, raw)
        assert Error.from_event(reply).code == code, (events, raw, reply)
    # The server is still there, and said nothing alarming.
    assert httpx.get(wyoming_server.url + "/health").status_code == 200
    assert "Traceback" not in wyoming_server.log()


def test_a_stalled_stream_times_out_and_an_idle_connection_is_closed(wyoming_server):
    async def stalled():
        async with AsyncTcpClient("127.0.0.1", wyoming_server.wyoming_port) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="Half a sent").event())
            started = time.monotonic()
            replies = await collect(client, until="error")
            return replies, time.monotonic() - started

    replies, waited = run(stalled())
    assert Error.from_event(replies[-1]).code == "request_timeout"
    assert 1.5 < waited < 10  # --client-timeout 2

    with socket.create_connection(("127.0.0.1", wyoming_server.wyoming_port)) as sock:
        sock.settimeout(10)
        assert sock.recv(1) == b""  # closed without a word: nothing was asked


def test_a_client_that_leaves_cancels_its_job(wyoming_server):
    cancelled = wyoming_server.metric("soprano_requests_cancelled_total")
    long_text = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 6)

    async def leave():
        client = AsyncTcpClient("127.0.0.1", wyoming_server.wyoming_port)
        await client.connect()
        await client.write_event(Synthesize(text=long_text).event())
        await collect(client, until="audio-chunk")
        client._writer.transport.abort()  # gone, mid-stream

    run(leave())
    deadline = time.monotonic() + 20
    while wyoming_server.metric("soprano_requests_cancelled_total") == cancelled:
        assert time.monotonic() < deadline, "the job of a client that left was not cancelled"
        time.sleep(0.1)
    assert wyoming_server.metric("soprano_queue_depth") == 0


def test_wyoming_alone_on_a_unix_socket(tmp_path):
    path = tmp_path / "wyoming.sock"
    process = ServerProcess(tmp_path, "--no-http", "--no-socket", "--wyoming", f"unix://{path}")
    process.start(ready=path.exists)
    try:
        async def describe_and_speak():
            async with AsyncUnixClient(str(path)) as client:
                await client.write_event(Describe().event())
                info = Info.from_event(await client.read_event())
                await client.write_event(Synthesize(text="Hello there.").event())
                return info, await collect(client, until="audio-stop")

        info, events = run(describe_and_speak())
        assert info.tts[0].voices[0].name == "soprano"
        assert len(audio_of(events)) > 0
        assert (path.stat().st_mode & 0o777) == 0o600
        with pytest.raises(httpx.HTTPError):
            httpx.get(process.url + "/health", timeout=1)  # no HTTP port
        idle = socket.socket(socket.AF_UNIX)
        idle.connect(str(path))  # an idle client does not hold up the shutdown
    finally:
        started = time.monotonic()
        assert process.stop() == 0, process.log()
    assert time.monotonic() - started < 10
    idle.close()
    assert not path.exists()  # removed at exit
    assert "Traceback" not in process.log()


@pytest.mark.parametrize("args, message", [
    (["--wyoming", "http://127.0.0.1:1"], "tcp://HOST:PORT"),
    (["--wyoming", "tcp://127.0.0.1"], "needs a host and a port"),
    (["--wyoming", "unix://"], "names no socket path"),
    (["--no-http", "--no-socket"], "nothing to serve"),
])
def test_bad_wyoming_options_exit_before_loading(args, message, capsys):
    from soprano_cli.cli.app import main

    with pytest.raises(SystemExit) as done:
        main(["serve", "--model", "/nonexistent", *args])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err


def test_events_without_data_are_answered(wyoming_server):
    # A bare header line (no data at all) is a valid event: describe as the simplest clients send it.
    with socket.create_connection(("127.0.0.1", wyoming_server.wyoming_port), timeout=10) as sock:
        sock.sendall(b'{"type": "describe"}\n')
        header = json.loads(sock.makefile("rb").readline())
    assert header["type"] == "info"
    assert np.isfinite(header["data_length"])
