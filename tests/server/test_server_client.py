"""`soprano synth`'s side: finding the daemon, and RemoteEngine giving the in-process engine's audio."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
import pytest

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import InvalidParameterError, ServerError
from soprano_cli.server.client import (RemoteEngine, connect_daemon, default_socket_path, find_daemon,
                                       normalize_url)

SENTENCES = ["Hello there.", "How are you doing today?", "The quick brown fox jumps over the lazy dog."]


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    """In-process engine on one thread, as the test servers run (OMP_NUM_THREADS=1).

    Float sums depend on how matmuls are split across threads; the decoder's first samples
    divide by a tiny window envelope and magnify a 1e-7 difference to 1e-4. Bit-identical
    audio needs the same thread count on both sides.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Engine.load(EngineConfig(model=str(tiny_checkpoint), device="cpu", dtype="float32"))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def remote(server):
    return RemoteEngine(f"unix:{server.socket_path}")


def joined(chunks, sentence=None):
    return np.concatenate([c.audio for c in chunks if sentence is None or c.sentence == sentence])


# -- find_daemon ---------------------------------------------------------------------------------


def test_no_daemon_is_fast_and_silent(monkeypatch, capsys):
    monkeypatch.delenv("SOPRANO_SERVER")
    started = time.perf_counter()
    assert find_daemon() is None
    assert time.perf_counter() - started < 0.05
    assert capsys.readouterr() == ("", "")


def test_none_disables(monkeypatch):
    monkeypatch.setenv("SOPRANO_SERVER", "none")
    assert find_daemon() is None
    assert find_daemon("none") is None


def test_explicit_addresses(monkeypatch):
    monkeypatch.delenv("SOPRANO_SERVER")
    assert find_daemon("http://10.0.0.5:8000/") == "http://10.0.0.5:8000"
    assert find_daemon("localhost:9000") == "http://localhost:9000"
    assert find_daemon("unix:///tmp/x.sock") == "unix:/tmp/x.sock"
    assert find_daemon("/tmp/x.sock") == "unix:/tmp/x.sock"
    monkeypatch.setenv("SOPRANO_SERVER", "http://example:1234")
    assert find_daemon() == "http://example:1234"
    assert normalize_url("unix:/a/b") == "unix:/a/b"


def test_stale_default_socket_is_ignored(monkeypatch):
    monkeypatch.delenv("SOPRANO_SERVER")
    path = default_socket_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening: connections are refused
    try:
        started = time.perf_counter()
        assert find_daemon() is None
        assert time.perf_counter() - started < 0.1
    finally:
        stale.close()
        path.unlink()


def test_live_default_socket_is_found(monkeypatch, server):
    monkeypatch.delenv("SOPRANO_SERVER")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(server.socket_path.parent.parent))
    assert find_daemon() == f"unix:{server.socket_path}"


def test_connect_daemon(monkeypatch, server, tiny_checkpoint, tmp_path):
    monkeypatch.delenv("SOPRANO_SERVER")
    assert connect_daemon() is None  # no default socket here
    url = f"unix:{server.socket_path}"
    remote = connect_daemon(url)
    assert remote is not None and remote.url == url and remote.config.max_batch == 16
    assert connect_daemon(url, model=str(tiny_checkpoint)) is not None
    assert connect_daemon(url, model="tiny") is not None
    with pytest.raises(ServerError, match="serves tiny"):
        connect_daemon(url, model="ekwek/Soprano-1.1-80M")
    with pytest.raises(ServerError, match="cannot reach"):
        connect_daemon(f"unix:{tmp_path / 'none.sock'}")
    # Found on its own (the default socket), a daemon with another model is skipped quietly.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(server.socket_path.parent.parent))
    assert connect_daemon(model="ekwek/Soprano-1.1-80M") is None
    assert connect_daemon(model=str(tiny_checkpoint)) is not None


def test_whole_sentence_chunks(engine, remote):
    """synth asks for 1 << 30 frames per chunk when it does not play live: one chunk per sentence."""
    daemon = list(remote.stream(SENTENCES[:2], SamplingParams(), chunk_frames=1 << 30))
    assert [c.final for c in daemon] == [True, True]
    local = list(engine.stream(SENTENCES[:2], SamplingParams(), chunk_frames=1 << 30))
    for a, b in zip(local, daemon):
        np.testing.assert_allclose(b.audio, a.audio, atol=1e-5, rtol=0)


def test_runtime_dir_fallback(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_socket_path() == type(default_socket_path())(f"/tmp/soprano-{os.getuid()}/soprano.sock")


# -- RemoteEngine --------------------------------------------------------------------------------


def test_stream_one_sentence_is_bit_identical(engine, remote):
    local = list(engine.stream(SENTENCES[:1], SamplingParams(), chunk_frames=1))
    daemon = list(remote.stream(SENTENCES[:1], SamplingParams(), chunk_frames=1))
    assert len(local) == len(daemon)
    for a, b in zip(local, daemon):
        assert (a.sentence, a.text, a.final, a.frames, a.finish_reason) == (b.sentence, b.text, b.final, b.frames,
                                                                            b.finish_reason)
        assert a.audio.dtype == b.audio.dtype == np.float32
        np.testing.assert_array_equal(a.audio, b.audio)


@pytest.mark.parametrize("chunk_frames", [1, 7])
def test_stream_several_sentences(engine, remote, chunk_frames):
    local = list(engine.stream(SENTENCES, SamplingParams(), chunk_frames=chunk_frames))
    daemon = list(remote.stream(SENTENCES, SamplingParams(), chunk_frames=chunk_frames))
    assert [(c.sentence, c.final, len(c.audio)) for c in local] == [(c.sentence, c.final, len(c.audio)) for c in daemon]
    # Batch composition may move floats by ~1e-6 (see test_server_api.assert_same_wav).
    np.testing.assert_allclose(joined(daemon), joined(local), atol=1e-5, rtol=0)


def test_synthesize_matches_engine(engine, remote):
    params = SamplingParams(retries=1)
    local = engine.synthesize(SENTENCES[:1], params)
    daemon = remote.synthesize(SENTENCES[:1], params)
    np.testing.assert_array_equal(daemon[0].audio, local[0].audio)
    assert (daemon[0].index, daemon[0].text, daemon[0].frames, daemon[0].finish_reason) == (
        local[0].index, local[0].text, local[0].frames, local[0].finish_reason)
    several = remote.synthesize(SENTENCES, params)
    expected = engine.synthesize(SENTENCES, params)
    assert [s.index for s in several] == [0, 1, 2]
    for a, b in zip(several, expected):
        assert a.frames == b.frames
        np.testing.assert_allclose(a.audio, b.audio, atol=1e-5, rtol=0)


def test_seeded_sampling_matches_engine(engine, remote):
    params = SamplingParams(temperature=1.0, top_p=1.0, seed=99)
    local = list(engine.stream(SENTENCES[:2], params))
    daemon = list(remote.stream(SENTENCES[:2], params))
    for i in range(2):  # sentence i is seeded by its index, in either process
        assert len(joined(daemon, i)) == len(joined(local, i))


def test_slow_input_keeps_order(engine, remote):
    def trickle():
        for sentence in SENTENCES:
            time.sleep(0.15)
            yield sentence

    chunks = list(remote.stream(trickle(), SamplingParams()))
    assert [c.sentence for c in chunks if c.final] == [0, 1, 2]
    assert [c.text for c in chunks if c.final] == SENTENCES
    whole = engine.synthesize(SENTENCES)
    for i in range(3):
        np.testing.assert_allclose(joined(chunks, i), whole[i].audio, atol=1e-5, rtol=0)


def test_abandoned_stream_is_cancelled(remote, server):
    before = server.metric("soprano_requests_cancelled_total")
    stream = remote.stream(SENTENCES * 10, SamplingParams())
    next(stream)
    stream.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.metric("soprano_requests_cancelled_total") == before:
        time.sleep(0.02)
    assert server.metric("soprano_requests_cancelled_total") == before + 1


def test_daemon_errors_are_typed(remote, server):
    class Unchecked:  # no validated(): the daemon is the one to refuse it
        temperature = 9.0

    with pytest.raises(InvalidParameterError) as caught:
        list(remote.stream(SENTENCES[:1], Unchecked()))
    assert caught.value.param == "temperature"
    with pytest.raises(InvalidParameterError):
        remote.synthesize(SENTENCES[:1], SamplingParams(temperature=9.0))  # refused locally, same type
    assert remote.health()["status"] == "ok"


def test_unreachable_daemon(tmp_path):
    with pytest.raises(ServerError, match="cannot reach"):
        list(RemoteEngine(f"unix:{tmp_path / 'nothing.sock'}").stream(SENTENCES[:1]))
    with pytest.raises(ServerError, match="cannot reach"):
        RemoteEngine("http://127.0.0.1:9").synthesize(SENTENCES[:1])


def test_api_key_from_environment(strict_server, monkeypatch):
    monkeypatch.setenv("SOPRANO_API_KEY", "sekrit")
    assert RemoteEngine(strict_server.url).synthesize(SENTENCES[:1])[0].frames > 0
    with pytest.raises(ServerError, match="API key"):
        RemoteEngine(strict_server.url, api_key="wrong").synthesize(SENTENCES[:1])


def test_client_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from soprano_cli.server.client import find_daemon, RemoteEngine; find_daemon(); "
            "assert 'torch' not in sys.modules and 'httpx' not in sys.modules and 'numpy' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "SOPRANO_SERVER": ""})
