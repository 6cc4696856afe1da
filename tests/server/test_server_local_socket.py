"""Another user on the same machine cannot plant a daemon: a socket directory that is not ours is refused
by `serve`, ignored by `synth`, and a socket served by another uid never gets our text (SO_PEERCRED).

A second user is needed to own things: the tests run where we are root (CI is) and make `nobody` the
impostor.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from server_process import TINY_CHECKPOINT, ServerProcess, free_port, server_env

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
                                reason="needs root (to act as a second user) and the system's python3")

IMPOSTOR = textwrap.dedent("""
    import os, socket, sys
    path, record = sys.argv[1], sys.argv[2]
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        data = conn.recv(65536)
        with open(record, "ab") as f:
            f.write(data + b"\\n---\\n")
        body = b'{"status": "ok", "model": "tiny", "max_batch": 16}'
        conn.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: %d\\r\\n"
                     b"connection: close\\r\\n\\r\\n%s" % (len(body), body))
        conn.close()
""")


@pytest.fixture
def shared_tmp():
    """A world-writable temp directory, as /tmp is, that `nobody` can reach."""
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        os.chmod(folder, 0o1777)
        yield Path(folder)


@pytest.fixture
def impostor(shared_tmp):
    """`nobody` got there first: soprano-0 in the temp directory is theirs, with a socket that answers."""
    directory = shared_tmp / f"soprano-{os.getuid()}"
    directory.mkdir(mode=0o777)
    os.chown(directory, NOBODY, NOBODY)
    record = shared_tmp / "heard"
    record.touch()
    os.chown(record, NOBODY, NOBODY)
    socket_path = directory / "soprano.sock"
    # The system's Python: our interpreter may live in root's home, which nobody cannot enter.
    process = subprocess.Popen([SYSTEM_PYTHON, "-c", IMPOSTOR, str(socket_path), str(record)], user=NOBODY,
                               group=NOBODY, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    yield socket_path, record
    process.kill()
    process.wait()


def environment(shared_tmp: Path, home: Path) -> dict:
    env = server_env(home)
    env.pop("XDG_RUNTIME_DIR")  # the fallback in the temp directory is the one that can be planted
    env.pop("SOPRANO_SERVER")
    env["TMPDIR"] = str(shared_tmp)
    return env


def test_serve_refuses_a_socket_directory_of_another_user(impostor, shared_tmp, tmp_path):
    socket_path, _ = impostor
    result = subprocess.run([sys.executable, "-m", "soprano_cli", "serve", "--model", str(TINY_CHECKPOINT), "--port",
                             str(free_port())], env=environment(shared_tmp, tmp_path), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 8, result.stderr
    assert f"belongs to uid {NOBODY}" in result.stderr and "Traceback" not in result.stderr
    assert socket_path.exists()  # not replaced either


def test_synth_ignores_a_planted_daemon(impostor, shared_tmp, tmp_path):
    _, record = impostor
    out = tmp_path / "out.wav"
    result = subprocess.run([sys.executable, "-m", "soprano_cli", "synth", "--model", str(TINY_CHECKPOINT), "--dtype",
                             "float32", "-o", str(out), "A secret sentence."], env=environment(shared_tmp, tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"belongs to uid {NOBODY}" in result.stderr  # said why the socket was not used
    assert out.stat().st_size > 1000  # made here instead
    assert b"secret" not in record.read_bytes()


def test_synth_never_sends_text_to_a_socket_of_another_user(impostor, shared_tmp, tmp_path):
    socket_path, record = impostor
    result = subprocess.run([sys.executable, "-m", "soprano_cli", "synth", "--server", f"unix:{socket_path}", "-o",
                             str(tmp_path / "out.wav"), "A secret sentence."], env=environment(shared_tmp, tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 8, result.stderr
    assert f"served by uid {NOBODY}" in result.stderr
    time.sleep(0.2)
    assert b"secret" not in record.read_bytes() and b"POST" not in record.read_bytes()


def test_serve_makes_its_own_directory_private(shared_tmp, tmp_path):
    """Our own directory left open (0755, say by an old version) is tightened, not refused."""
    directory = shared_tmp / f"soprano-{os.getuid()}"
    directory.mkdir()
    os.chmod(directory, 0o755)
    port = free_port()
    command = [sys.executable, "-m", "soprano_cli", "serve", "--model", str(TINY_CHECKPOINT), "--port", str(port)]
    server = ServerProcess(tmp_path, command=command, port=port, socket_path=directory / "soprano.sock")
    server.env = environment(shared_tmp, tmp_path)
    server.start()
    try:
        assert oct(directory.stat().st_mode & 0o777) == "0o700"
        assert (directory / "soprano.sock").exists()
    finally:
        server.stop()
