"""The daemon's default limits, each in one place: `soprano serve`'s options, ServerConfig and its
SOPRANO_* variables, the scheduler and the connections read them. Imports nothing, so that
`soprano serve --help` shows them without loading the server."""

from __future__ import annotations

MAX_INPUT_CHARS = 4096  # longest request text, in characters
MAX_QUEUE = 64  # requests that may wait for a place in the batch before 429
MAX_BACKLOG_SECONDS = 20.0  # audio a request may have waiting for its reader before it is paused
HEADER_TIMEOUT = 10.0  # seconds a client may take to send a request's headers
BODY_TIMEOUT = 3 * HEADER_TIMEOUT  # ... and its body (serve's --request-timeout sets both, so)
CLIENT_TIMEOUT = 30.0  # seconds a reader may take no bytes before it is dropped
DRAIN_TIMEOUT = 30.0  # after SIGTERM, seconds requests in flight get before they are cancelled
