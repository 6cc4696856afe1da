"""`soprano serve`: keep the model loaded and answer HTTP (OpenAI's speech API) on TCP and a Unix socket."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from soprano_cli.cli import options as opt

WEBUI_PORT = 7860  # upstream's web UI port


def register(app: typer.Typer) -> None:
    """Add the `serve` subcommand to the app."""

    @app.command(
        "serve",
        help="Load the model once and serve OpenAI's /v1/audio/speech, a web page and a daemon for `soprano synth`.",
    )
    def serve_command(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
        port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
        socket_path: Path = typer.Option(
            None, "--socket", help="Unix socket path [default: $XDG_RUNTIME_DIR/soprano/soprano.sock].",
            show_default=False),
        no_socket: bool = typer.Option(False, "--no-socket", help="Do not listen on a Unix socket."),
        model: opt.Model = None,
        device: opt.Device = "auto",
        backend: opt.Backend = "auto",
        dtype: opt.Dtype = "auto",
        api_key: str = typer.Option(None, "--api-key", envvar="SOPRANO_API_KEY",
                                    help="Require 'Authorization: Bearer KEY' on every route but /health."),
        max_input_chars: int = typer.Option(4096, "--max-input-chars", min=1, help="Longest accepted input."),
        max_queue: int = typer.Option(64, "--max-queue", min=0,
                                      help="Requests that may wait for the batch before 429."),
        max_batch: opt.MaxBatch = None,
        decoder_batch_size: opt.DecoderBatchSize = None,
        cache_size: opt.CacheSize = 100,
        cors_origin: list[str] = typer.Option(None, "--cors-origin",
                                              help="Allow browser requests from this origin (repeatable)."),
        quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors on stderr."),
        verbose: bool = typer.Option(False, "-v", "--verbose", help="Debug messages and an access log."),
    ) -> None:
        from soprano_cli.server.app import ServerConfig, serve
        from soprano_cli.server.client import default_socket_path

        level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
        logging.basicConfig(level=level, stream=sys.stderr, format="soprano: %(message)s")
        config = ServerConfig(
            engine=opt.engine_config(model, device, backend, dtype, max_batch, decoder_batch_size, cache_size),
            api_key=api_key or None,
            max_input_chars=max_input_chars,
            max_queue=max_queue,
            cors_origins=list(cors_origin or []),
        )
        path = None if no_socket else (socket_path or default_socket_path())
        serve(config, host=host, port=port, socket_path=path, log_level=logging.getLevelName(level).lower(),
              access_log=verbose)


def webui_main() -> None:
    """`soprano-webui`: `soprano serve` under its own name, on upstream's web UI port 7860."""
    import copy

    from soprano_cli.cli.app import app, main

    serve = copy.deepcopy(typer.main.get_command(app).commands["serve"])
    for param in serve.params:
        if param.name == "port":
            param.default = WEBUI_PORT
    serve.context_settings = {**serve.context_settings, "help_option_names": ["-h", "--help"]}
    serve.help = (f"Serve the web page at http://127.0.0.1:{WEBUI_PORT}/ (and OpenAI's /v1/audio/speech) with the "
                  "model loaded once: `soprano serve --port 7860`, under upstream's name.")
    main(sys.argv[1:], command=serve, prog_name="soprano-webui")
