"""`soprano doctor`: the expected checks, JSON output, exit status from failures only, no network."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import threading

import pytest
from system_deps import needs

from soprano_cli import doctor
from soprano_cli.errors import EXIT_FAILURE, EXIT_OK

from .conftest import run_soprano

EXPECTED = [
    "python", "torch", "device.cpu", "device.cuda", "device.mps", "backend.torch", "backend.transformers",
    "backend.lmdeploy", "cpu.features", "cpu.threads", "precision.auto", "audio", "ffmpeg", "model.cache", "daemon",
]


def test_doctor_json_with_a_usable_model(tiny_checkpoint):
    done = run_soprano(["doctor", "--json"], env={"SOPRANO_MODEL": str(tiny_checkpoint)})
    checks = json.loads(done.stdout)
    assert [check["name"] for check in checks] == EXPECTED
    assert all(set(check) == {"name", "status", "detail", "hint"} for check in checks)
    assert all(check["status"] in ("ok", "warn", "fail", "info") for check in checks)
    by_name = {check["name"]: check for check in checks}
    assert by_name["model.cache"]["status"] == "ok"
    assert by_name["python"]["status"] == "ok" and by_name["torch"]["status"] == "ok"
    assert by_name["daemon"]["status"] == "info"  # SOPRANO_SERVER=none in the test sandbox
    failed = [check for check in checks if check["status"] == "fail"]
    assert done.returncode == (EXIT_FAILURE if failed else EXIT_OK), failed


def test_doctor_says_how_decode_steps_run(monkeypatch):
    [features] = [check for check in doctor.check_cpu() if check.name == "cpu.features"]
    assert "decode loop: TorchScript" in features.detail
    monkeypatch.setenv("SOPRANO_TORCHSCRIPT", "0")
    [features] = [check for check in doctor.check_cpu() if check.name == "cpu.features"]
    assert "decode loop: eager (SOPRANO_TORCHSCRIPT=0)" in features.detail


def test_doctor_says_which_kernels_and_what_auto_chose(tmp_path, monkeypatch):
    import torch

    from soprano_cli.engine import precision_probe
    from soprano_cli.engine.engine import Engine, EngineConfig
    from soprano_cli.engine.random_checkpoint import CheckpointSizes, write_random_checkpoint

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    [check] = doctor.check_precision()
    assert check.status == "info" and "int8: " in check.detail and "bfloat16: " in check.detail
    if not precision_probe.candidates(torch.device("cpu")):
        return
    small_random_checkpoint = write_random_checkpoint(tmp_path / "random", CheckpointSizes.tiny(), seed=3)
    monkeypatch.setattr(precision_probe, "PROBE_FRAMES", 16)
    engine = Engine.load(EngineConfig(model=str(small_random_checkpoint), device="cpu", dtype="auto"))
    [check] = doctor.check_precision()
    assert check.status == "ok" and small_random_checkpoint.name in check.detail
    assert f"LM {engine.dtype}, decoder {engine.decoder_dtype}" in check.detail and " dB / " in check.detail


def test_doctor_fails_offline_without_model():
    # The sandbox is offline with an empty cache: the default model can't load, so doctor exits 1.
    done = run_soprano(["doctor"])
    assert done.returncode == EXIT_FAILURE
    text = done.stdout.decode()
    assert "✗ model.cache" in text and "hint: run `soprano models download`" in text
    assert "✓ python" in text


def test_model_check_with_cached_model(cached_model):
    [check] = doctor.check_model()
    assert check.status == "ok" and str(cached_model) in check.detail


@pytest.fixture
def local_hub(monkeypatch):
    """A stand-in hub on loopback that answers every request with 404, as HF_ENDPOINT."""
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()


def test_model_check_online_not_cached(monkeypatch, local_hub):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    [check] = doctor.check_model()
    assert check.status == "warn" and "the first synthesis downloads it" in check.hint
    assert "soprano models download" in check.hint


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is: connections are refused


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "", "HF_ENDPOINT": "closed"}],
                         ids=["HF_HUB_OFFLINE", "hub unreachable"])
def test_doctor_offline_promises_no_download(env):
    # Broke: with the hub unreachable doctor said "the first synthesis downloads it", which then failed.
    env = {name: f"http://127.0.0.1:{_closed_port()}" if value == "closed" else value for name, value in env.items()}
    done = run_soprano(["doctor", "--json"], env=env)
    [check] = [check for check in json.loads(done.stdout) if check["name"] == "model.cache"]
    assert check["status"] == "fail" and "downloads it" not in check["hint"]
    assert "soprano models download" in check["hint"]
    if "HF_ENDPOINT" in env:
        assert f"the hub ({env['HF_ENDPOINT']}) does not answer" in check["detail"]
    assert done.returncode == EXIT_FAILURE


@needs("ffmpeg")
def test_doctor_reports_ffmpeg():
    [check] = doctor.check_ffmpeg()
    assert check.status == "ok" and check.detail.startswith("ffmpeg ") and shutil.which("ffmpeg") in check.detail
    assert "aac" in check.detail


def test_doctor_warns_without_ffmpeg(monkeypatch, tmp_path):
    # Broke: doctor did not look for ffmpeg, and aac output failed only when asked for.
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no ffmpeg on PATH
    [check] = doctor.check_ffmpeg()
    assert check.status == "warn" and "aac output needs it" in check.detail and "install ffmpeg" in check.hint


def test_model_check_bad_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SOPRANO_MODEL", str(tmp_path))
    [check] = doctor.check_model()
    assert check.status == "fail" and "lacks" in check.detail


def test_daemon_check_not_running(monkeypatch):
    monkeypatch.delenv("SOPRANO_SERVER")
    [check] = doctor.check_daemon()
    assert check.status == "info" and "not running" in check.detail


def test_daemon_check_unreachable_server(monkeypatch, tmp_path):
    monkeypatch.setenv("SOPRANO_SERVER", f"unix:{tmp_path}/nothing.sock")
    [check] = doctor.check_daemon()
    assert check.status == "warn"


def test_doctor_reports_lmdeploy_as_this_machine_has_it():
    import importlib.util

    import torch

    [check] = [c for c in doctor.check_backends() if c.name == "backend.lmdeploy"]
    if importlib.util.find_spec("lmdeploy") is None:
        assert (check.status, check.detail) == ("info", "not installed (CUDA only)")
        expected_hint = "pip install 'soprano-cli[lmdeploy]'" if torch.cuda.is_available() else "needs an NVIDIA GPU"
        assert expected_hint in check.hint
    else:
        assert doctor._version("lmdeploy") in check.detail


def _installed_package(root, version: str, turbomind: bool):
    """An lmdeploy as pip lays it out (package folder, dist-info), found by doctor without importing it."""
    package = root / "lmdeploy"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('doctor must not import lmdeploy')\n")
    if turbomind:
        (package / "lib" / "_turbomind.cpython-312-x86_64-linux-gnu.so").write_bytes(b"")
    info = root / f"lmdeploy-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lmdeploy\nVersion: {version}\n")


@pytest.mark.parametrize("turbomind,cuda,status,detail", [
    (True, True, "ok", "lmdeploy 0.14.0 (TurboMind engine, CUDA)"),
    (True, False, "info", "lmdeploy 0.14.0 installed, but no CUDA GPU here"),
    (False, True, "warn", "lmdeploy 0.14.0 without its TurboMind engine"),
])
def test_doctor_reports_an_installed_lmdeploy_version_engine_and_cuda(tmp_path, monkeypatch, turbomind, cuda,
                                                                      status, detail):
    import importlib

    _installed_package(tmp_path, "0.14.0", turbomind)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    check = doctor.check_lmdeploy(cuda)
    assert check.status == status and check.detail.startswith(detail)
