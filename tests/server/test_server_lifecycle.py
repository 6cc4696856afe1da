"""The daemon's life: SIGTERM drains and removes the socket, uvicorn from the environment, a busy port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from server_process import TINY_CHECKPOINT, ServerProcess, free_port, server_env

LONG = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)


def test_sigterm_drains_in_flight_requests_then_removes_the_socket(tmp_path):
    server = ServerProcess(tmp_path, "--max-batch", "2").start()
    body = {"model": "soprano", "input": LONG, "response_format": "pcm"}
    expected = httpx.post(server.url + "/v1/audio/speech", json=body, timeout=60).content
    received = bytearray()
    done = threading.Event()

    def read_stream():
        with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, timeout=60) as response:
            for piece in response.iter_raw():
                received.extend(piece)
                if not started.is_set():
                    started.set()
        done.set()

    started = threading.Event()
    reader = threading.Thread(target=read_stream)
    reader.start()
    assert started.wait(30)
    server.process.send_signal(signal.SIGTERM)
    reader.join(60)
    assert done.is_set()
    assert len(received) == len(expected)  # the request in flight was finished, not cut
    assert server.process.wait(30) == 0
    assert not server.socket_path.exists()
    assert "Traceback" not in server.log()
    server.stop()


def test_uvicorn_app_from_environment(tmp_path):
    port = free_port()
    env = {"SOPRANO_MODEL": str(TINY_CHECKPOINT), "SOPRANO_API_KEY": "k", "SOPRANO_MAX_INPUT_CHARS": "50"}
    command = [sys.executable, "-m", "uvicorn", "soprano_cli.server:app", "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(tmp_path, env=env, command=command, port=port).start()
    try:
        key = {"Authorization": "Bearer k"}
        assert httpx.get(server.url + "/v1/models", headers=key).json()["data"][0]["id"] == "tiny"
        ok = httpx.post(server.url + "/v1/audio/speech", headers=key, timeout=30,
                        json={"model": "tiny", "input": "Hello there.", "response_format": "wav"})
        assert ok.status_code == 200 and ok.content[:4] == b"RIFF"
        too_long = httpx.post(server.url + "/v1/audio/speech", headers=key, json={"model": "tiny", "input": "a" * 51})
        assert too_long.status_code == 400
        assert httpx.get(server.url + "/metrics").status_code == 401
    finally:
        assert server.stop() in (0, -signal.SIGTERM)  # plain uvicorn re-raises the signal after its shutdown


def test_busy_port_is_one_line_and_exit_8(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "soprano_cli", "serve", "--model", str(TINY_CHECKPOINT), "--port", str(port),
             "--no-socket"],
            env=server_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 8
    assert result.stderr.strip().splitlines() == [f"soprano: error: cannot listen on 127.0.0.1:{port}: "
                                                  "Address already in use"]


def test_a_live_socket_is_not_stolen(tmp_path, server):
    result = subprocess.run(
        [sys.executable, "-m", "soprano_cli", "serve", "--model", str(TINY_CHECKPOINT), "--port", str(free_port()),
         "--socket", str(server.socket_path)],
        env=server_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 8
    assert "already listening" in result.stderr
    assert server.socket_path.exists()


def _serve_on_socket(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`soprano serve` claiming the given sockets; the model does not exist, so a claim that
    succeeds ends in exit 4 (no model) instead of serving."""
    return subprocess.run([sys.executable, "-m", "soprano_cli", "serve", "--model", str(tmp_path / "no-model"), *args],
                          env=server_env(tmp_path), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("option", ["--socket", "--wyoming"])
def test_a_file_where_the_socket_goes_is_left_alone(tmp_path, option):
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\n")
    where = str(notes) if option == "--socket" else f"unix://{notes}"
    result = _serve_on_socket(tmp_path, "--no-http", *(["--no-socket"] if option == "--wyoming" else []), option, where)
    assert result.returncode == 8, result.stderr
    assert result.stderr.strip() == f"soprano: error: cannot listen on {notes}: it exists and is not a socket"
    assert notes.read_text() == "precious\n"


def test_another_programs_live_socket_is_not_stolen(tmp_path):
    path = tmp_path / "other.sock"
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(path))
    other.listen(1)  # listening, but not a soprano daemon: it does not answer GET /health
    try:
        result = _serve_on_socket(tmp_path, "--no-http", "--socket", str(path))
        assert result.returncode == 8, result.stderr
        assert "already listening" in result.stderr
        assert path.is_socket()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # still the other program's
    finally:
        other.close()


def test_a_stale_socket_is_replaced(tmp_path):
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(str(path))  # closed without unlinking: nobody listens
    result = _serve_on_socket(tmp_path, "--no-http", "--socket", str(path))
    assert result.returncode == 4 and "no model folder" in result.stderr  # the socket was claimed, then the model missed


def test_missing_model_is_a_clean_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "soprano_cli", "serve", "--model", str(tmp_path / "nope"), "--port", str(free_port()),
         "--no-socket"],
        env=server_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    assert "Traceback" not in result.stderr and result.stderr.startswith("soprano: error:")


def test_cli_import_stays_light():
    code = ("import sys, soprano_cli.cli.app; "
            "heavy = {'torch', 'fastapi', 'uvicorn', 'httpx', 'ray'} & set(sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_serve_help_and_webui_entry_point():
    result = subprocess.run([sys.executable, "-m", "soprano_cli", "serve", "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0
    for option in ("--host", "--port", "--socket", "--no-socket", "--api-key", "--max-input-chars", "--max-queue",
                   "--max-batch", "--cors-origin", "--model", "--device", "--backend", "--dtype"):
        assert option in result.stdout
    from soprano_cli.cli.serve import WEBUI_PORT, webui_main

    assert WEBUI_PORT == 7860 and callable(webui_main)


def test_default_socket_in_runtime_dir(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "soprano_cli", "serve", "--model", str(TINY_CHECKPOINT), "--port", str(port)]
    run_dir = tmp_path / "run"
    server = ServerProcess(tmp_path, command=command, port=port, socket_path=run_dir / "soprano" / "soprano.sock")
    os.chmod(tmp_path, 0o755)
    server.start()
    try:
        assert (run_dir / "soprano" / "soprano.sock").exists()
        assert oct((run_dir / "soprano").stat().st_mode & 0o777) == "0o700"
    finally:
        server.stop()
    assert not (run_dir / "soprano" / "soprano.sock").exists()
