"""Fixtures for the audio tests: a private PulseAudio daemon with a null sink, and test signals."""

from __future__ import annotations

import os

import pytest
from pulse_server import PulseServer, Recorder
from system_deps import require


@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory):
    """Start a private pulseaudio for the session; skip only when it is not installed."""
    require("pulseaudio")
    server = PulseServer(tmp_path_factory.mktemp("pulse")).start()
    # Set for the whole session, before anything imports sounddevice in this process:
    # PortAudio lists devices once, at import, and the ALSA pulse plugin reads PULSE_SERVER.
    saved = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = server.address
    yield server
    if saved is None:
        os.environ.pop("PULSE_SERVER", None)
    else:
        os.environ["PULSE_SERVER"] = saved
    server.stop()


@pytest.fixture
def pulse(pulse_server, monkeypatch):
    """The server, with PULSE_SERVER set for this test and its subprocesses."""
    monkeypatch.setenv("PULSE_SERVER", pulse_server.address)
    return pulse_server


@pytest.fixture
def recorder(pulse):
    """A running recording of the null sink's monitor."""
    with Recorder(pulse) as rec:
        yield rec
