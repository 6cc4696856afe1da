"""`soprano synth` with a real daemon running: when it may use it, and that options are checked first."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from server_process import TINY_CHECKPOINT

from soprano_cli.errors import EXIT_BACKEND, EXIT_SERVER, EXIT_USAGE
from soprano_cli.server.client import engine_mismatch

AUDIO = "soprano_audio_seconds_total"  # grows with every sentence the daemon speaks


def synth(server, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """`soprano synth -v ARGS "Hi there."` where the test daemon's socket is the default one."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("SOPRANO_SERVER", "SOPRANO_DTYPE")}
    full_env.update(XDG_RUNTIME_DIR=str(server.socket_path.parent.parent), OMP_NUM_THREADS="1", **(env or {}))
    command = [sys.executable, "-m", "soprano_cli", "synth", "-v", "--max-frames", "8", *args, "Hi there."]
    return subprocess.run(command, capture_output=True, text=False, timeout=120, env=full_env)


def test_the_daemon_on_the_default_socket_is_used(server):
    before = server.metric(AUDIO)
    done = synth(server)
    assert done.returncode == 0, done.stderr
    assert b"using the daemon" in done.stderr and done.stdout[:4] == b"RIFF"
    assert server.metric(AUDIO) > before


@pytest.mark.parametrize("env", [{}, {"SOPRANO_SERVER": "daemon-url"}], ids=["default socket", "SOPRANO_SERVER"])
def test_no_server_never_contacts_a_daemon(server, env):
    # Broke: synth passed server=None for --no-server, which means "find the daemon", and used it.
    env = {name: server.url if value == "daemon-url" else value for name, value in env.items()}
    before = server.metric(AUDIO)
    done = synth(server, "--no-server", "--model", str(TINY_CHECKPOINT), "--dtype", "float32", env=env)
    assert done.returncode == 0, done.stderr
    assert b"daemon" not in done.stderr and done.stdout[:4] == b"RIFF"
    assert server.metric(AUDIO) == before


@pytest.mark.parametrize("args,code,message", [
    (("--device", "gpu"), EXIT_USAGE, b"unknown device 'gpu'"),
    (("--dtype", "fp16"), EXIT_USAGE, b"unknown dtype 'fp16'"),
    (("--backend", "tensorrt"), EXIT_USAGE, b"unknown backend 'tensorrt'"),
    # A valid name the daemon does not run: synth works in-process, where this machine has no lmdeploy.
    (("--backend", "lmdeploy"), EXIT_BACKEND, b"lmdeploy"),
])
def test_engine_options_are_checked_even_with_a_daemon(server, args, code, message):
    # Broke: a running daemon took the work and these all exited 0, the options never looked at.
    before = server.metric(AUDIO)
    done = synth(server, *args)
    assert done.returncode == code, done.stderr
    assert message in done.stderr and done.stdout == b""
    assert server.metric(AUDIO) == before


def test_a_daemon_with_another_engine_is_skipped_and_verbose_says_why(server):
    # The daemon runs float32 weights; int8 asked for is synthesized here, not silently in float32.
    before = server.metric(AUDIO)
    done = synth(server, "--model", str(TINY_CHECKPOINT), "--dtype", "int8")
    assert done.returncode == 0, done.stderr
    assert b"not using the daemon" in done.stderr and b"runs dtype float32, not int8" in done.stderr
    assert done.stdout[:4] == b"RIFF"
    assert server.metric(AUDIO) == before


def test_a_daemon_matching_every_given_option_is_used(server):
    before = server.metric(AUDIO)
    done = synth(server, "--model", str(TINY_CHECKPOINT), "--device", "cpu", "--backend", "torch",
                 env={"SOPRANO_DTYPE": "float32"})
    assert done.returncode == 0, done.stderr
    assert b"using the daemon" in done.stderr
    assert server.metric(AUDIO) > before


def test_an_explicit_daemon_with_another_engine_is_an_error(server):
    done = synth(server, "--server", server.url, "--dtype", "bfloat16")
    assert done.returncode == EXIT_SERVER
    assert b"runs dtype float32, not bfloat16" in done.stderr and b"--no-server" in done.stderr


HEALTH = {"model": "tiny", "model_path": "/nonexistent/tiny", "device": "cpu", "backend": "torch", "dtype": "bfloat16"}


@pytest.mark.parametrize("served,wanted,mismatch", [
    ({}, {}, None),
    ({}, {"device": "auto", "dtype": "auto", "backend": "auto"}, None),
    ({}, {"device": "cpu", "dtype": "bfloat16", "backend": "torch"}, None),
    ({}, {"device": "cuda"}, "runs device cpu, not cuda"),
    ({"device": "cuda:0"}, {"device": "cuda"}, None),  # "cuda" asks for any GPU
    ({"device": "cuda:0"}, {"device": "cuda:1"}, "runs device cuda:0, not cuda:1"),
    ({}, {"dtype": "float32"}, "runs dtype bfloat16, not float32"),
    ({}, {"backend": "transformers"}, "runs backend torch, not transformers"),
    ({}, {"model": "ekwek/Soprano-1.1-80M"}, "serves tiny, not ekwek/Soprano-1.1-80M"),
    ({"dtype": None}, {"dtype": "int8"}, "runs dtype unknown, not int8"),  # a daemon too old to say
])
def test_engine_mismatch(served, wanted, mismatch):
    assert engine_mismatch({**HEALTH, **served}, **wanted) == mismatch


def test_synth_through_the_daemon_never_imports_torch(server):
    # Options are validated without torch (engine/config.py), so a daemon run stays light: it
    # used to import torch (about 2 s) only to build an EngineConfig.
    code = ("import atexit, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules, "
            "file=sys.stderr)); from soprano_cli.cli.app import main; "
            "main(['synth', '-v', '--dtype', 'float32', '--device', 'cpu', 'Hi there.'])")
    env = {k: v for k, v in os.environ.items() if k != "SOPRANO_SERVER"}
    env["XDG_RUNTIME_DIR"] = str(server.socket_path.parent.parent)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert b"using the daemon" in done.stderr and b"torch loaded: False" in done.stderr
