"""The HTTP daemon: `soprano serve`, `uvicorn soprano_cli.server:app`, and the client `soprano synth` uses.

`app` is built on first access (from SOPRANO_* environment variables), so importing this package
costs nothing; the model itself loads in the app's lifespan.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "create_app"]

_app = None


def __getattr__(name: str) -> Any:
    global _app  # a lazily built module attribute, not a swapped function
    if name == "app":
        if _app is None:
            from soprano_cli.server.app import create_app

            _app = create_app()
            # Importing the submodule `app` bound the name `app` here to that module; the name
            # belongs to the ASGI app (`uvicorn soprano_cli.server:app`), so rebind it.
            globals()["app"] = _app
        return _app
    if name == "create_app":
        from soprano_cli.server.app import create_app

        return create_app
    raise AttributeError(f"module 'soprano_cli.server' has no attribute {name!r}")
