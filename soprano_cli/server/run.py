"""Running the daemon: its sockets, taken before the model loads, and a shutdown with a deadline.

The port and the Unix socket are claimed first (a lock file guards the socket), so a second
`soprano serve` started while the first one loads its model fails at once instead of taking
the port or replacing the socket file. SIGTERM or Ctrl-C drains: no new connections, requests
in flight finish, for at most `drain_timeout` seconds; then they are cancelled. A second
signal exits at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
from pathlib import Path

import uvicorn

from soprano_cli.engine.engine import Engine
from soprano_cli.errors import EXIT_OK, ServerError
from soprano_cli.server.app import ServerConfig, create_app
from soprano_cli.server.connections import protocol_class
from soprano_cli.server.local_socket import listen_unix, make_private_dir

log = logging.getLogger(__name__)


def serve(config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8000, socket_path: Path | None = None,
          log_level: str = "info", access_log: bool = False, http: bool = True) -> int:
    """Claim the sockets, load the model, serve until a signal, drain; returns the exit status.

    `http=False`: no TCP port for HTTP (`host` and `port` unused); the Unix socket and Wyoming remain.
    """
    sockets: list[socket.socket] = []
    lock = unix = wyoming = None
    try:
        if http:
            sockets.append(_tcp_socket(host, port))
        if socket_path is not None:
            lock = _lock_socket_dir(socket_path)
            unix = listen_unix(socket_path, backlog=2048, in_use=f"a soprano daemon is already listening on {socket_path}")
            sockets.append(unix)
        if config.wyoming:
            from soprano_cli.server import wyoming_server

            wyoming = wyoming_server.listen(wyoming_server.parse_address(config.wyoming))
        if not sockets and wyoming is None:
            raise ServerError("nothing to serve: with --no-http and --no-socket, give --wyoming")
        engine = Engine.load(config.engine)
        if host not in config.allowed_hosts:
            config.allowed_hosts.append(host)  # clients may call the server by the name it was started with
        app = create_app(config, engine, wyoming_socket=wyoming)
        uv_config = uvicorn.Config(app, log_config=None, log_level=log_level, access_log=access_log,
                                   lifespan="on", http=protocol_class(config.deadlines),
                                   # A WebSocket message past this is dropped unread (the live stream checks
                                   # its own, smaller limit); audio does not compress, so no deflate.
                                   ws_max_size=4 * config.live.max_message_chars, ws_per_message_deflate=False)
        server = _DrainingServer(uv_config, config.drain_timeout)
        places = [f"http://{_format_host(address[0])}:{address[1]}" for address in
                  (sock.getsockname() for sock in sockets[:1] if http)]
        places += [f"unix:{socket_path}"] if socket_path else []
        if places:
            log.info("listening on %s", " and ".join(places))
        asyncio.run(server.serve(sockets=sockets))
        if not server.started:
            raise ServerError("the server could not start (see the messages above)")
        if server.force_exit:
            log.warning("stopped at once: requests in flight were abandoned")
            return 128 + server.signals[-1]
        log.info("stopped")
        return EXIT_OK
    finally:
        for sock in sockets + ([wyoming] if wyoming is not None else []):
            sock.close()
        if unix is not None:  # ours to remove: we bound it, and the lock says no other daemon owns this path
            try:
                socket_path.unlink()
            except FileNotFoundError:
                pass
        if lock is not None:
            lock.close()


class _DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain deadline that disconnects clients rather than cancelling tasks
    (a cancelled task logs a traceback; a disconnect ends the response as a client leaving would),
    and where any second SIGTERM or SIGINT means "now" (uvicorn: only a second SIGINT)."""

    def __init__(self, config: uvicorn.Config, drain_timeout: float):
        super().__init__(config)
        self.drain_timeout = drain_timeout
        self.signals: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    async def shutdown(self, sockets=None) -> None:
        await super().shutdown(sockets=sockets)
        if self.force_exit and not self.lifespan.shutdown_event.is_set():
            # uvicorn skips the app's shutdown when forced, leaving it to be cancelled with a
            # traceback; the requests are gone by now, so it is quick.
            try:
                await asyncio.wait_for(self.lifespan.shutdown(), 5)
            except asyncio.TimeoutError:
                log.warning("the model's worker did not stop within 5 s")

    def handle_exit(self, sig: int, frame) -> None:
        # Not recorded in uvicorn's own list, which it would re-raise after a clean shutdown.
        self.signals.append(sig)
        if self.should_exit:
            self.force_exit = True
            self._call_soon(self._disconnect_all)
        else:
            self.should_exit = True
            log.info("draining: finishing requests in flight for up to %g s (again to stop at once)",
                     self.drain_timeout)
            self._call_soon(lambda: self._loop.call_later(self.drain_timeout, self._drain_deadline))

    def _call_soon(self, callback) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)

    def _drain_deadline(self) -> None:
        if self.server_state.connections:
            log.warning("drain deadline: cancelling %d request(s) still in flight", len(self.server_state.connections))
        self._disconnect_all()

    def _disconnect_all(self) -> None:
        for connection in list(self.server_state.connections):
            connection.transport.abort()
        state = getattr(self.config.app.state, "soprano", None)
        if state is not None and state.wyoming is not None:
            state.wyoming.abort_all()


def _tcp_socket(host: str, port: int) -> socket.socket:
    """Bound and listening, so that no other process can bind the port while the model loads."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ServerError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def _lock_socket_dir(path: Path):
    """Make the socket's directory private (if it is ours to manage) and hold its lock file for our lifetime."""
    if path.parent.name == "soprano" or path.parent.name.startswith("soprano-"):
        make_private_dir(path.parent)  # our own directory: refuse one somebody else created
    else:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock_path = path.with_name(f"{path.name}.lock")
    previous = os.umask(0o177)
    try:
        lock = open(lock_path, "a+b")
    except OSError as error:
        raise ServerError(f"cannot create {lock_path}: {error.strerror or error}") from None
    finally:
        os.umask(previous)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ServerError(f"a soprano daemon is already listening on {path} (or still loading its model)") from None
    return lock


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

