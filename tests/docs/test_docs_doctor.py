"""`soprano doctor`: the expected checks, JSON output, exit status from failures only, no network."""

from __future__ import annotations

import json

from soprano_cli import doctor
from soprano_cli.errors import EXIT_FAILURE, EXIT_OK

from .conftest import run_soprano

EXPECTED = [
    "python", "torch", "device.cpu", "device.cuda", "device.mps", "backend.torch", "backend.transformers",
    "backend.lmdeploy", "cpu.features", "cpu.threads", "audio", "model.cache", "daemon",
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


def test_model_check_online_not_cached(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("soprano_cli.engine.checkpoint.hub_offline", lambda: False)
    [check] = doctor.check_model()
    assert check.status == "warn" and "soprano models download" in check.hint


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
