"""Ctrl-C and SIGTERM that end a run cleanly: never inside an encoder's write, always as KeyboardInterrupt.

Python raises KeyboardInterrupt wherever the main thread happens to be. Inside libsndfile's write
callback that is fatal to the file: the exception cannot cross the C code, so it was printed and
dropped (the run went on to exit 0 with corrupt mp3 frames) or left a FLAC header half written.
`deferred_signals` holds both signals while an encoder works and delivers them right after.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every path that saves a file on Ctrl-C runs for it too."""


def _raise_terminated(signum, frame):
    raise Terminated()


def handle_sigterm() -> None:
    """Turn SIGTERM into `Terminated` in the main thread (the CLI's exit 143), instead of an instant death."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextmanager
def deferred_signals():
    """Hold SIGINT and SIGTERM while the block runs, then deliver the first that came to its usual handler.

    Only the main thread receives signals, so elsewhere (the server's workers) this does nothing;
    nor where an event loop owns the signals through a wakeup fd (the server's own thread), which
    would see each signal twice.
    """
    if threading.current_thread() is not threading.main_thread() or _event_loop_owns_signals():
        yield
        return
    caught: list[int] = []
    previous = {number: signal.signal(number, lambda number, frame: caught.append(number)) for number in _SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        if caught:
            signal.raise_signal(caught[0])  # the restored handler runs now: KeyboardInterrupt, Terminated, ...


def _event_loop_owns_signals() -> bool:
    wakeup_fd = signal.set_wakeup_fd(-1)  # the only way to read it is to set it: put it back at once
    signal.set_wakeup_fd(wakeup_fd)
    return wakeup_fd != -1
