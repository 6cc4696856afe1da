"""Server fixtures: real `soprano serve` processes, shared per module to keep the run fast."""

from __future__ import annotations

import pytest
from server_process import ServerProcess

@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The default server: tiny model, no key, default limits."""
    process = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def strict_server(tmp_path_factory):
    """A server with an API key (from a file), a one-sentence batch, a one-request queue, a short input
    limit, one allowed origin and one allowed host name."""
    folder = tmp_path_factory.mktemp("strict")
    key_file = folder / "key"
    key_file.write_text("sekrit\n")
    key_file.chmod(0o600)
    process = ServerProcess(folder, "--api-key-file", str(key_file), "--max-batch", "1",
                            "--max-queue", "1", "--max-input-chars", "2000",
                            "--cors-origin", "http://allowed.example", "--allowed-host", "tts.example").start()
    yield process
    process.stop()
