"""Reading a slow iterable (a pipe) on a thread, so that whoever consumes it never waits on input."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable


class Prefetch:
    """Items of an iterable, read ahead on a daemon thread; its errors re-raise in the consumer."""

    _END = object()

    def __init__(self, items: Iterable, name: str = "soprano-input"):
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self.exhausted = False
        threading.Thread(target=self._run, args=(items,), daemon=True, name=name).start()

    def _run(self, items) -> None:
        try:
            for item in items:
                self._queue.put(item)
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._error = error
        self._queue.put(self._END)

    def _next(self, block: bool):
        """The next item, or None when none is ready; marks the end and re-raises a reader error."""
        try:
            item = self._queue.get(block=block)
        except queue.Empty:
            return None
        if item is self._END:
            self.exhausted = True
            if self._error is not None:
                raise self._error
            return None
        return item

    def get(self, block: bool):
        """The next item, None if none is ready (non-blocking); raises StopIteration at the end."""
        if self.exhausted:
            raise StopIteration
        item = self._next(block)
        if item is None and self.exhausted:
            raise StopIteration
        return item

    def take(self, block: bool, limit: int) -> list:
        """Up to `limit` items that are ready, waiting for the first one if `block`."""
        batch: list = []
        while len(batch) < limit and not self.exhausted:
            item = self._next(block and not batch)
            if item is None:
                break
            batch.append(item)
        return batch
