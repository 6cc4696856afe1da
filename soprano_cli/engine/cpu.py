"""What this CPU offers, as /proc/cpuinfo lists it: the int8 layers and `soprano doctor` both ask.

Torch-free, so `soprano doctor` reads it even where torch cannot be imported.
"""

from __future__ import annotations

import functools


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU flags /proc/cpuinfo lists, read once (every int8 layer asks); empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as info:
            line = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def cpu_has_flag(*names: str) -> bool:
    """Whether /proc/cpuinfo lists any of these CPU flags (False where it cannot be read)."""
    return any(name in cpu_flags() for name in names)


def cpu_has_fast_bfloat16() -> bool:
    return cpu_has_flag("avx512_bf16", "amx_bf16")
