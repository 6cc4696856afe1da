"""Finding a running daemon and using it as an engine: what `soprano synth` calls when one is up.

`find_daemon()` answers in a few milliseconds (and silently) when there is none. `RemoteEngine`
has Engine's `stream()` and `synthesize()`; its audio is the daemon's float32 chunks, bit for bit,
so a file made through the daemon equals one made in-process. Imports neither torch nor httpx.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import queue
import socket
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence as SequenceOf
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from soprano_cli.engine.prefetch import Prefetch
from soprano_cli.engine.results import AudioChunk, SentenceAudio
from soprano_cli.errors import InvalidParameterError, ServerError
from soprano_cli.model_facts import MAX_NEW_TOKENS, REPETITION_PENALTY, RETRIES, SAMPLE_RATE, TEMPERATURE, TOP_P
from soprano_cli.server.local_socket import connect_unix, default_socket_path, private_dir_problem, probe_socket

log = logging.getLogger(__name__)

DISABLED = ("none", "off", "no", "0", "false")
STREAM_PATH = "/v1/soprano/stream"
MAX_CHUNK = 1024  # chunk_frames sent to the daemon: more than any sentence's frames


def normalize_url(value: str) -> str:
    """`unix:/path`, `unix:///path`, a bare socket path, `host:port` or an http(s) URL -> a canonical URL."""
    value = value.strip()
    if value.startswith("unix://"):
        return "unix:" + value[len("unix://"):]
    if value.startswith("unix:"):
        return value
    if value.startswith("/") or value.startswith("~"):
        return "unix:" + os.path.expanduser(value)
    if "://" not in value:
        value = "http://" + value
    return value.rstrip("/")


def find_daemon(server: str | None = None, *, timeout: float = 0.2) -> str | None:
    """The daemon to use: `server`, else $SOPRANO_SERVER, else the default socket if it answers; None for none.

    An explicit address is returned without a check (using it reports a clear error if it is
    down); "none" disables. Only the default socket is probed, and only when its file exists.
    """
    value = server if server is not None else os.environ.get("SOPRANO_SERVER")
    if value is not None and value.strip():
        if value.strip().lower() in DISABLED:
            return None
        return normalize_url(value)
    path = default_socket_path()
    if not path.exists():
        return None
    problem = private_dir_problem(path.parent)
    if problem is not None:
        log.warning("ignoring the daemon socket %s: %s", path, problem)
        return None
    return f"unix:{path}" if probe_socket(path, timeout) else None


def connect_daemon(server: str | None = None, *, model: str | None = None, device: str | None = None,
                   backend: str | None = None, dtype: str | None = None,
                   timeout: float = 0.2) -> "RemoteEngine | None":
    """A RemoteEngine for the daemon `find_daemon(server)` names, or None to synthesize in-process.

    `model`, `device`, `backend` and `dtype` are what the caller asked for (None or 'auto': no
    wish); the daemon is used only when its engine, as its /health reports it, matches each of
    them. A daemon found on its own that does not match is skipped (None, with the reason logged),
    while an explicitly named one is an error. An explicitly named daemon that does not answer is an
    error too (ServerError), never a silent fallback.
    """
    explicit = (server if server is not None else os.environ.get("SOPRANO_SERVER") or "").strip()
    url = find_daemon(server, timeout=timeout)
    if url is None:
        return None
    remote = RemoteEngine(url)
    try:
        health = remote.health()
    except ServerError:
        if explicit:
            raise
        return None
    remote.config = RemoteConfig(model=health.get("model", ""), max_batch=int(health.get("max_batch", 16)))
    mismatch = engine_mismatch(health, model=model, device=device, backend=backend, dtype=dtype)
    if mismatch is not None:
        if explicit:
            raise ServerError(f"the daemon at {url} {mismatch}; start one with what you asked for, or use --no-server")
        log.info("not using the daemon at %s: it %s; synthesizing in this process", url, mismatch)
        return None
    return remote


def engine_mismatch(health: dict, *, model: str | None = None, device: str | None = None,
                    backend: str | None = None, dtype: str | None = None) -> str | None:
    """How a daemon's engine (its /health) differs from the one asked for, e.g. "runs dtype int8, not float32"; None if it matches."""
    if model is not None and not _same_model(model, health):
        return f"serves {health.get('model')}, not {model}"
    for name, wanted in (("device", device), ("backend", backend), ("dtype", dtype)):
        if wanted is None or wanted.lower() == "auto":
            continue
        served = str(health.get(name) or "")
        # "cuda" asks for any GPU; "cuda:1" for that one (a daemon reports the device it placed itself on).
        if served.lower() != wanted.lower() and served.lower().partition(":")[0] != wanted.lower():
            return f"runs {name} {served or 'unknown'}, not {wanted}"
    return None


def _same_model(requested: str, health: dict) -> bool:
    if requested == health.get("model"):
        return True
    path = Path(requested).expanduser()
    served = health.get("model_digest")
    return bool(served) and path.exists() and model_digest(path) == served


def model_digest(folder: str | os.PathLike) -> str:
    """What /health shows instead of the model's path: clients compare folders without the server revealing one."""
    return hashlib.sha256(os.fsencode(Path(folder).expanduser().resolve())).hexdigest()[:16]


@dataclass
class RemoteConfig:
    """The part of EngineConfig callers read from a daemon."""

    model: str = ""
    max_batch: int = 16


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = connect_unix(self._path, self.timeout)  # refuses a daemon of another user


_DEFAULTS = {"temperature": TEMPERATURE, "top_p": TOP_P, "repetition_penalty": REPETITION_PENALTY, "seed": None,
             "max_new_tokens": MAX_NEW_TOKENS, "retries": RETRIES}


def _params_payload(params) -> dict:
    """SamplingParams (or anything with its fields) -> the request's sampling fields, validated first."""
    if params is None:
        return dict(_DEFAULTS)
    validated = getattr(params, "validated", None)
    if validated is not None:
        params = validated()
    return {name: getattr(params, name, default) for name, default in _DEFAULTS.items()}


class RemoteEngine:
    """A daemon used like an Engine: `stream()` and `synthesize()` with Engine's signatures."""

    sample_rate = SAMPLE_RATE

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 600.0):
        self.url = normalize_url(url)
        self.api_key = api_key if api_key is not None else os.environ.get("SOPRANO_API_KEY") or None
        self.timeout = timeout
        self.config = RemoteConfig()  # filled from /health by connect_daemon

    # -- transport ------------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self.url.startswith("unix:"):
            return _UnixConnection(self.url[len("unix:"):], self.timeout)
        parts = urlsplit(self.url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        return kind(parts.hostname or "127.0.0.1", parts.port, timeout=self.timeout)

    def _prefix(self) -> str:
        return "" if self.url.startswith("unix:") else urlsplit(self.url).path.rstrip("/")

    def _request(self, method: str, path: str, payload: dict | None = None):
        """Send a request; return (connection, response) for a 200, raise the daemon's error otherwise."""
        headers = {"Accept": "*/*"}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        connection = self._connection()
        try:
            connection.request(method, self._prefix() + path, body=body, headers=headers)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            raise ServerError(f"cannot reach the soprano daemon at {self.url}: {reason}") from None
        if response.status != 200:
            data = response.read()
            connection.close()
            raise _error_from(response.status, data, self.url)
        return connection, response

    def health(self) -> dict:
        """The daemon's /health answer."""
        connection, response = self._request("GET", "/health")
        try:
            return json.loads(response.read())
        finally:
            connection.close()

    def _frames(self, sentences: list[str], start_index: int, params: dict, *, chunk_frames: int, whole: bool,
                on_connection=None):
        """Chunks of one request as (Frame, numpy samples), in order."""
        import numpy as np

        from soprano_cli.server.protocol import KIND_ERROR, read_frames

        # Any size past the longest sentence means "the whole sentence in one piece".
        payload = {"sentences": sentences, "start_index": start_index, "chunk_frames": min(chunk_frames, MAX_CHUNK),
                   "whole": whole, **params}
        connection, response = self._request("POST", STREAM_PATH, payload)
        if on_connection is not None:
            on_connection(connection)
        try:
            for frame in read_frames(response.read):
                if frame.kind == KIND_ERROR:
                    body = frame.error()
                    raise _error_from(body.get("status", 500), json.dumps(body).encode(), self.url)
                yield frame, np.frombuffer(frame.payload, dtype="<f4").astype(np.float32)
        except (OSError, http.client.HTTPException) as error:
            raise ServerError(f"the soprano daemon at {self.url} broke off the stream: {error}") from None
        finally:
            connection.close()

    # -- the Engine interface -------------------------------------------------------------------

    def synthesize(self, sentences: SequenceOf[str], params=None) -> list:
        """Audio for each sentence, as Engine.synthesize (retries included), decoded by the daemon."""
        sentences = list(sentences)
        if not sentences:
            return []
        payload = _params_payload(params)
        results = []
        for frame, audio in self._frames(sentences, 0, payload, chunk_frames=1, whole=True):
            results.append(SentenceAudio(index=frame.sentence, text=sentences[frame.sentence], audio=audio,
                                         frames=frame.frames, finish_reason=frame.finish_reason or "stop",
                                         hallucinated=frame.hallucinated))
        if len(results) != len(sentences):
            raise ServerError(f"the soprano daemon at {self.url} returned {len(results)} of {len(sentences)} sentences")
        return results

    def stream(self, sentences: Iterable[str], params=None, chunk_frames: int = 1, in_order: bool = True) -> Iterator:
        """Audio chunks in sentence order, as Engine.stream; a slow iterable (a pipe) is read as it arrives.

        The daemon answers in order whatever `in_order` says (it is accepted for Engine's interface).

        Sentences available together go in one request; sentences that arrive while earlier ones
        are still generating go in a new request at once, so the daemon batches them together.
        """
        from soprano_cli.server.protocol import MAX_STREAM_SENTENCES  # the most one request may carry

        if chunk_frames < 1:
            raise InvalidParameterError("chunk size must be at least 1 frame", param="chunk_frames")
        payload = _params_payload(params)
        source = Prefetch(sentences, name="soprano-remote-input")
        groups: deque[_Group] = deque()
        index = 0
        try:
            while True:
                if not source.exhausted:
                    batch = source.take(block=not groups, limit=MAX_STREAM_SENTENCES)
                    if batch:
                        group = _Group(self, batch, index, payload, chunk_frames)
                        groups.append(group)
                        index += len(batch)
                if not groups:
                    if source.exhausted:
                        return
                    continue
                item = groups[0].get(timeout=None if source.exhausted else 0.05)
                if item is _Group.EMPTY:
                    continue
                if item is _Group.DONE:
                    groups.popleft()
                    continue
                yield item
        finally:
            for group in groups:
                group.close()


class _Group:
    """One request's chunks, read on a thread into a queue so several requests run at once."""

    DONE = object()
    EMPTY = object()

    def __init__(self, engine: RemoteEngine, sentences: list[str], start: int, payload: dict, chunk_frames: int):
        self._queue: queue.Queue = queue.Queue()
        self._connection = None
        self._closed = False
        self._args = (engine, sentences, start, payload, chunk_frames)
        threading.Thread(target=self._run, daemon=True, name="soprano-remote-request").start()

    def _run(self) -> None:
        engine, sentences, start, payload, chunk_frames = self._args
        try:
            frames = engine._frames(sentences, start, payload, chunk_frames=chunk_frames, whole=False,
                                    on_connection=self._set_connection)
            for frame, audio in frames:
                self._queue.put(AudioChunk(sentence=frame.sentence, text=sentences[frame.sentence - start],
                                           audio=audio, final=frame.final, frames=frame.frames,
                                           finish_reason=frame.finish_reason))
            self._queue.put(self.DONE)
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._queue.put(error if not self._closed else self.DONE)

    def _set_connection(self, connection) -> None:
        self._connection = connection
        if self._closed:
            connection.close()

    def get(self, timeout: float | None):
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return self.EMPTY
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Abandon the request: closing the connection makes the daemon cancel its work."""
        self._closed = True
        connection = self._connection
        if connection is not None and connection.sock is not None:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _error_from(status: int, data: bytes, url: str) -> Exception:
    """The daemon's OpenAI-shaped error -> the matching typed error."""
    try:
        error = json.loads(data)["error"]
        message, param = error.get("message") or "unknown error", error.get("param")
    except (ValueError, KeyError, TypeError):
        message, param = data.decode("utf-8", "replace").strip()[:200] or f"HTTP {status}", None
    if status == 400 and param:
        return InvalidParameterError(message, param=param)
    if status == 401:
        return ServerError(f"the soprano daemon at {url} refused the API key (set SOPRANO_API_KEY): {message}")
    return ServerError(f"the soprano daemon at {url} answered {status}: {message}")
