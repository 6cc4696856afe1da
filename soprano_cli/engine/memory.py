"""Returning freed heap memory to the operating system."""

from __future__ import annotations


def release_free_memory() -> None:
    """Hand freed temporaries back to the OS: glibc keeps them in its heaps (one per thread that
    allocated) otherwise, and a loader's temporaries would stay in the process's peak memory."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
