"""The daemon's Unix socket: where it lives, and whom `soprano synth` may trust with its text.

The socket's directory must be ours and private (0700): in a shared /tmp anyone could create
it first and plant a socket there. A client also asks the kernel who listens (SO_PEERCRED)
before it sends a word, so a socket another user planted is refused even where its path was
given explicitly. Root may serve anyone: root can read everything anyway.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import tempfile
from pathlib import Path

from soprano_cli.errors import ServerError

SOCKET_NAME = "soprano.sock"
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def runtime_dir() -> Path:
    """The daemon's private directory: $XDG_RUNTIME_DIR/soprano, else soprano-<uid> in the temp directory."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "soprano"
    return Path(tempfile.gettempdir()) / f"soprano-{os.getuid()}"


def default_socket_path() -> Path:
    return runtime_dir() / SOCKET_NAME


def private_dir_problem(path: Path) -> str | None:
    """Why `path` is not a directory only we can use (None when it is, or does not exist yet)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_uid != os.getuid():
        return f"{path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()})"
    if info.st_mode & 0o077:
        return f"{path} is open to other users (mode {oct(info.st_mode & 0o777)})"
    return None


def make_private_dir(path: Path) -> None:
    """Create `path` as 0700, or make an existing one of ours 0700; refuse one that is not ours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours: fixing its mode is safe
    problem = private_dir_problem(path)
    if problem is not None:
        raise ServerError(f"refusing to put the daemon's socket there: {problem}; remove it or set XDG_RUNTIME_DIR")


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process on the other end of a connected Unix socket (None where the OS cannot say)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    _, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return uid


def check_peer(sock: socket.socket, path: str | os.PathLike) -> None:
    """Raise ServerError unless the daemon on `sock` runs as us (or root)."""
    uid = peer_uid(sock)
    if uid is not None and uid not in (os.getuid(), 0):
        raise ServerError(f"the socket {os.fspath(path)} is served by uid {uid}, not by you (uid {os.getuid()}); "
                          "refusing to send it text")


def connect_unix(path: str | os.PathLike, timeout: float) -> socket.socket:
    """A connected socket to a daemon we trust; raises OSError or ServerError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        check_peer(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


def probe_socket(path: str | os.PathLike, timeout: float = 0.2) -> bool:
    """True when a daemon we trust on this Unix socket answers GET /health with 200 within `timeout`."""
    try:
        with connect_unix(path, timeout) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.1 200")
    except (OSError, ServerError):
        return False


def listen_unix(path: Path, *, backlog: int, in_use: str) -> socket.socket:
    """A listening Unix socket at `path`, created 0600, for a server to claim before it loads its model.

    A socket file that refuses connections is stale and replaced. One that accepts them (or cannot
    be told apart from a busy one) raises ServerError(`in_use`). Any other file there is left alone
    and is an error too: a mistyped path must not delete a user's file.
    """
    if os.path.lexists(path):
        if not path.is_socket():
            raise ServerError(f"cannot listen on {path}: it exists and is not a socket")
        if not _refuses_connections(path):
            raise ServerError(in_use)
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # created 0600: no moment when others could connect
    try:
        sock.bind(str(path))
        sock.listen(backlog)
    except OSError as error:
        sock.close()
        raise ServerError(f"cannot listen on {path}: {error.strerror or error}") from None
    finally:
        os.umask(previous)
    return sock


def _refuses_connections(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(str(path)) == errno.ECONNREFUSED  # a timeout may be a full backlog: not stale
