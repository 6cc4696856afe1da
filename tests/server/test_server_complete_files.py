"""`stream: false`: one complete file whose header declares its real length, with the streamed audio.

What broke: the server only streamed, and a streamed file cannot go back to its start, so a WAV
said 0xFFFFFFFF (soxi: 18 h), an MP3 had a blank Xing frame (ffprobe guessed 6.11 s for 6.37 s)
and a FLAC had no total samples (libsndfile read garbage).
"""

from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import time

import httpx
import numpy as np
import openai
import pytest
import soundfile
from server_process import child_names
from system_deps import needs

TEXT = "Hello there. How are you doing today? The quick brown fox jumps over the lazy dog."
BODY = {"model": "soprano", "input": TEXT}
MP3_FRAME = 1152  # samples per MPEG-1 Layer III frame
MP3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


def speak(server, fmt: str, **extra) -> httpx.Response:
    response = httpx.post(server.url + "/v1/audio/speech", json={**BODY, "response_format": fmt, **extra},
                          timeout=120)
    assert response.status_code == 200, response.text
    return response


@pytest.fixture(scope="module")
def reference(server) -> np.ndarray:
    """The streamed audio as int16 at 32 kHz: what every complete file must hold."""
    return np.frombuffer(speak(server, "pcm", sample_rate=32000).content, "<i2")


def test_complete_wav_has_its_sizes(server, reference):
    response = speak(server, "wav", stream=False)
    data = response.content
    assert int(response.headers["content-length"]) == len(data)
    riff, = struct.unpack_from("<I", data, 4)
    data_size, = struct.unpack_from("<I", data, 40)
    assert (data[:4], data[36:40], riff, data_size) == (b"RIFF", b"data", len(data) - 8, len(data) - 44)
    assert soundfile.info(io.BytesIO(data)).frames == len(reference)
    assert np.array_equal(np.frombuffer(data[44:], "<i2"), reference)


def test_complete_pcm_is_the_streamed_bytes(server):
    streamed = speak(server, "pcm").content
    response = speak(server, "pcm", stream=False)
    assert response.content == streamed
    assert int(response.headers["content-length"]) == len(streamed)


def test_complete_flac_has_its_total_samples(server, reference):
    data = speak(server, "flac", stream=False).content
    # STREAMINFO: the last 36 bits of the 8 bytes after the block sizes and frame sizes.
    total = int.from_bytes(data[18:26], "big") & ((1 << 36) - 1)
    assert (data[:4], total) == (b"fLaC", len(reference))
    assert soundfile.info(io.BytesIO(data)).frames == len(reference)
    # The same frames as the stream: only STREAMINFO (frame sizes, total, MD5) was filled in.
    streamed = speak(server, "flac").content
    assert len(data) == len(streamed) and data[42:] == streamed[42:]
    # libsndfile rounds float to int16 its own way (not float_to_int16's): within one step of the wav.
    decoded, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert rate == 32000 and np.abs(decoded.astype(int) - reference).max() <= 1


def mp3_declared_samples(data: bytes) -> int:
    """The exact length an MP3 declares: Xing frame count x 1152, less the LAME tag's delay and padding."""
    tag = max(data.find(b"Xing"), data.find(b"Info"))
    assert tag > 0, "no Xing/Info frame"
    flags, frames = struct.unpack_from(">II", data, tag + 4)
    assert flags & 1, "the Xing frame has no frame count"
    lame = data.find(b"LAME", tag)
    assert lame > 0, "no LAME tag"
    a, b, c = data[lame + 21:lame + 24]
    return frames * MP3_FRAME - ((a << 4) | (b >> 4)) - (((b & 0x0F) << 8) | c)


def mp3_first_frame_bytes(data: bytes) -> int:
    """Size of the first (Xing) frame of an MPEG-1 Layer III stream at 32 kHz."""
    assert data[0] == 0xFF and data[1] & 0xFE == 0xFA and (data[2] >> 2) & 3 == 2  # MPEG-1 L3, 32 kHz
    return 144 * MP3_KBPS[data[2] >> 4] * 1000 // 32000 + ((data[2] >> 1) & 1)


def test_complete_mp3_declares_its_exact_length(server, reference):
    complete = speak(server, "mp3", stream=False).content
    streamed = speak(server, "mp3").content
    assert mp3_declared_samples(complete) == len(reference)
    assert soundfile.info(io.BytesIO(complete)).frames == len(reference)  # libsndfile reads the LAME tag
    # The same encoded audio: only the first frame (the Xing/LAME header) was filled in.
    assert len(complete) == len(streamed)
    differ = np.flatnonzero(np.frombuffer(complete, np.uint8) != np.frombuffer(streamed, np.uint8))
    assert differ.size and differ.max() < mp3_first_frame_bytes(complete)


@needs("ffmpeg")
def test_complete_mp3_duration_in_ffmpeg(server, reference, tmp_path):
    path = tmp_path / "complete.mp3"  # a file: ffmpeg trims the end padding only where it can seek
    path.write_bytes(speak(server, "mp3", stream=False).content)
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-"],
                             capture_output=True, check=True).stdout
    assert len(decoded) // 2 == len(reference)  # gapless: delay and padding trimmed
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration,start_time",
                                       "-of", "json", str(path)], capture_output=True, check=True).stdout)["format"]
    # ffprobe counts whole frames from the encoder delay on: within one frame of the truth.
    shown = float(probe["duration"]) - float(probe["start_time"])
    assert abs(shown - len(reference) / 32000) < MP3_FRAME / 32000


@pytest.mark.parametrize("fmt, rate", [("ogg", 32000), ("opus", 48000)])
def test_complete_ogg_has_its_length(server, reference, fmt, rate):
    complete = speak(server, fmt, stream=False).content
    streamed = speak(server, fmt).content
    assert soundfile.info(io.BytesIO(complete)).frames == round(len(reference) * rate / 32000)
    # Ogg pages only differ by their random stream serial number: the decoded audio is the same.
    assert np.array_equal(soundfile.read(io.BytesIO(complete))[0], soundfile.read(io.BytesIO(streamed))[0])


@needs("ffmpeg")
def test_complete_aac_is_the_streamed_file(server):
    # ADTS has no length field; the file is whole and sized, and the same as the stream.
    response = speak(server, "aac", stream=False)
    assert response.content == speak(server, "aac").content
    assert int(response.headers["content-length"]) == len(response.content)


def test_stream_omitted_still_streams(server):
    omitted = speak(server, "wav")
    assert "content-length" not in omitted.headers and omitted.headers.get("transfer-encoding") == "chunked"
    assert struct.unpack_from("<I", omitted.content, 40)[0] == 0xFFFFFFFF
    assert speak(server, "wav", stream=True).content == omitted.content


def test_openai_client_extra_body(server, reference):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)
    data = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="flac",
                                      extra_body={"stream": False}).content
    assert soundfile.info(io.BytesIO(data)).frames == len(reference)


def test_sse_cannot_be_a_complete_file(server):
    response = httpx.post(server.url + "/v1/audio/speech",
                          json={**BODY, "stream": False, "stream_format": "sse"}, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "stream" and "stream_format 'audio'" in error["message"]


@pytest.mark.parametrize("fmt", ["wav", pytest.param("aac", marks=needs("ffmpeg"))])
def test_client_leaving_cancels_the_work(server, fmt):
    """Nothing is sent while a complete file is made: a client that leaves is still noticed."""
    cancelled = server.metric("soprano_requests_cancelled_total")
    body = json.dumps({**BODY, "input": " ".join([TEXT] * 16), "response_format": fmt, "stream": False}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 30
        while server.metric("soprano_active_sequences") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.metric("soprano_active_sequences") > 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (server.metric("soprano_requests_cancelled_total") > cancelled
                and server.metric("soprano_active_sequences") == 0 and server.metric("soprano_queue_depth") == 0
                and not child_names(server.process.pid)):
            break
        time.sleep(0.02)
    assert server.metric("soprano_requests_cancelled_total") == cancelled + 1
    assert server.metric("soprano_active_sequences") == 0
    assert child_names(server.process.pid) == []  # the ffmpeg encoder was closed
    assert speak(server, fmt, stream=False, input="Hi.").content
