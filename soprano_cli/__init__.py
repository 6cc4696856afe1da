"""Soprano text-to-speech for the shell, scripts and servers.

Importing this package is cheap: the engine (and torch) load on first use of its names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Engine", "EngineConfig", "SamplingParams", "SopranoTTS", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from soprano_cli.engine.engine import Engine, EngineConfig, SamplingParams
    from soprano_cli.engine.tts import SopranoTTS

_LAZY = {
    "Engine": "soprano_cli.engine.engine",
    "EngineConfig": "soprano_cli.engine.engine",
    "SamplingParams": "soprano_cli.engine.sampling",
    "SopranoTTS": "soprano_cli.engine.tts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'soprano_cli' has no attribute {name!r}")
