"""Returning freed heap memory to the operating system."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_M_MMAP_THRESHOLD = -3  # mallopt's parameter
LOADING_MMAP_THRESHOLD = 128 * 1024  # glibc's starting value
RUNNING_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest automatic value on 64-bit


def _libc():
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to do
        return None


def release_free_memory() -> None:
    """Hand freed temporaries back to the OS: glibc keeps them in its heaps (one per thread that
    allocated) otherwise, and a loader's temporaries would stay in the process's peak memory."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _set_mmap_threshold(size: int) -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, size)


@contextlib.contextmanager
def temporaries_returned_at_once() -> Iterator[None]:
    """While loading, every allocation of 128 KB or more is mapped on its own, so a freed
    temporary goes back to the OS at once. glibc's default raises that threshold to the largest
    block freed so far: after the first quantized layer, a loader's temporaries came from the
    heaps and stayed there, bimodally, 30-80 MB of the peak. After, temporaries up to 32 MB come
    from the heaps again: mapping each one made every decoder call fault its pages in anew."""
    _set_mmap_threshold(LOADING_MMAP_THRESHOLD)
    try:
        yield
    finally:
        release_free_memory()
        _set_mmap_threshold(RUNNING_MMAP_THRESHOLD)
