"""Where soprano keeps what it works out once per machine: probe decisions, smoothing factors, kernels."""

from __future__ import annotations

import os
from pathlib import Path


def soprano_cache_dir() -> Path:
    """$XDG_CACHE_HOME/soprano, else ~/.cache/soprano."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "soprano"
