"""`soprano models` on a hub cache laid out by hand in the test's HF_HOME (never the network)."""

from __future__ import annotations

import json

from soprano_cli import models
from soprano_cli.errors import EXIT_MODEL_NOT_FOUND, EXIT_OK, EXIT_USAGE

from .conftest import MODEL_ID, cache_model, run_soprano


def test_list_table(cached_model):
    done = run_soprano(["models", "list"])
    assert done.returncode == EXIT_OK, done.stderr
    header, row = done.stdout.decode().splitlines()
    assert header.split() == ["ID", "SIZE", "PATH"]
    assert row.split()[0] == MODEL_ID
    assert row.endswith(str(cached_model))
    assert "MB" in row


def test_list_json(cached_model):
    done = run_soprano(["models", "list", "--json"])
    assert done.returncode == EXIT_OK, done.stderr
    [entry] = json.loads(done.stdout)
    assert entry["id"] == MODEL_ID
    assert entry["path"] == str(cached_model)
    assert entry["complete"] is True
    assert entry["size_bytes"] == sum(p.stat().st_size for p in cached_model.iterdir())


def test_list_empty_cache():
    done = run_soprano(["models", "list"])
    assert done.returncode == EXIT_OK
    assert done.stdout == b""
    assert b"no Soprano models cached" in done.stderr
    assert json.loads(run_soprano(["models", "list", "--json"]).stdout) == []


def test_list_skips_other_repos_and_marks_incomplete(hub_cache, tiny_checkpoint, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")
    cache_model(hub_cache, "someone/unrelated-model", other)
    cache_model(hub_cache, "someone/soprano-partial", other)
    found = models.list_models()
    assert [(m.repo_id, m.complete) for m in found] == [("someone/soprano-partial", False)]
    assert "(incomplete)" in run_soprano(["models", "list"]).stdout.decode()


def test_rm_with_yes(cached_model, hub_cache):
    done = run_soprano(["models", "rm", MODEL_ID, "--yes"])
    assert done.returncode == EXIT_OK, done.stderr
    assert b"removed" in done.stderr
    assert not (hub_cache / "models--ekwek--Soprano-1.1-80M").exists()
    assert models.list_models() == []


def test_rm_refuses_without_terminal(cached_model):
    done = run_soprano(["models", "rm", MODEL_ID])  # stdin is a pipe here
    assert done.returncode == EXIT_USAGE
    assert b"--yes" in done.stderr
    assert cached_model.exists()


def test_rm_unknown_model(cached_model):
    done = run_soprano(["models", "rm", "someone/missing", "--yes"])
    assert done.returncode == EXIT_MODEL_NOT_FOUND
    assert done.stderr.decode().count("\n") == 1
    assert MODEL_ID in done.stderr.decode()  # names what is cached
    assert cached_model.exists()


def test_download_offline_nothing_cached():
    done = run_soprano(["models", "download"])
    assert done.returncode == EXIT_MODEL_NOT_FOUND
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soprano: error:") and "HF_HUB_OFFLINE" in lines[0]


def test_download_offline_cached_prints_folder(cached_model):
    done = run_soprano(["models", "download", MODEL_ID, "--quiet"])
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.decode().strip() == str(cached_model)


def test_download_local_folder_is_a_no_op(tiny_checkpoint):
    done = run_soprano(["models", "download"], env={"SOPRANO_MODEL": str(tiny_checkpoint)})
    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.decode().strip() == str(tiny_checkpoint)


def test_download_rejects_non_id():
    done = run_soprano(["models", "download", "not a model"])
    assert done.returncode == EXIT_USAGE
    assert b"hub id" in done.stderr


def test_human_size():
    assert models.human_size(999) == "999 B"
    assert models.human_size(1536) == "1.5 KB"
    assert models.human_size(13_486_467) == "13.5 MB"
