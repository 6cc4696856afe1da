"""The daemon's life: SIGTERM drains and removes the socket, uvicorn from the environment, a busy port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import httpx

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
