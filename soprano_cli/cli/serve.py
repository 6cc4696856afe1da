"""`soprano serve`: keep the model loaded and answer HTTP (OpenAI's speech API) on TCP and a Unix socket."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from soprano_cli.cli import options as opt
from soprano_cli.server import limits

log = logging.getLogger("soprano_cli.serve")
WEBUI_PORT = 7860  # upstream's web UI port
ACCESS_PANEL = "Access"
LIMITS_PANEL = "Limits"


def register(app: typer.Typer) -> None:
    """Add the `serve` subcommand to the app."""

    @app.command(
        "serve",
        help="Load the model once and serve OpenAI's /v1/audio/speech, a web page and a daemon for `soprano synth`.",
    )
    def serve_command(
        ctx: typer.Context,
        host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default).")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
        socket_path: Annotated[Optional[Path], typer.Option(
            "--socket", show_default=False,
            help="Unix socket path [default: $XDG_RUNTIME_DIR/soprano/soprano.sock].")] = None,
        no_socket: Annotated[bool, typer.Option("--no-socket", help="Do not listen on a Unix socket.")] = False,
        wyoming: Annotated[Optional[str], typer.Option(
            "--wyoming", metavar="URI", show_default=False,
            help="Also speak the Wyoming protocol (Home Assistant) at tcp://HOST:PORT or unix://PATH, "
                 "e.g. tcp://0.0.0.0:10200; it shares the model and batch with HTTP.")] = None,
        http: Annotated[bool, typer.Option(
            "--http/--no-http", help="Serve HTTP on --host/--port; --no-http with --wyoming serves only Wyoming "
                                     "(and the Unix socket unless --no-socket).")] = True,
        model: opt.Model = None,
        device: opt.Device = "auto",
        backend: opt.Backend = "auto",
        dtype: opt.Dtype = "auto",
        api_key_file: Annotated[Optional[Path], typer.Option(
            "--api-key-file", rich_help_panel=ACCESS_PANEL, show_default=False,
            help="Require 'Authorization: Bearer KEY' on every route but the web page and /health; the key is "
                 "this file's first line. $SOPRANO_API_KEY works too.")] = None,
        api_key: Annotated[Optional[str], typer.Option(
            "--api-key", envvar="SOPRANO_API_KEY", rich_help_panel=ACCESS_PANEL, show_default=False,
            help="The key itself (other users can read it in `ps`: prefer --api-key-file).")] = None,
        allowed_host: Annotated[Optional[list[str]], typer.Option(
            "--allowed-host", metavar="HOST", rich_help_panel=ACCESS_PANEL, show_default=False,
            help="A host name clients may use besides loopback names and IP addresses (repeatable; "
                 "'.example.com' allows its subdomains, '*' any).")] = None,
        cors_origin: Annotated[Optional[list[str]], typer.Option(
            "--cors-origin", metavar="ORIGIN", rich_help_panel=ACCESS_PANEL, show_default=False,
            help="Let web pages from this origin call the API (repeatable).")] = None,
        max_input_chars: Annotated[int, typer.Option(
            "--max-input-chars", min=1, rich_help_panel=LIMITS_PANEL,
            help="Longest accepted input.")] = limits.MAX_INPUT_CHARS,
        max_queue: Annotated[int, typer.Option(
            "--max-queue", min=0, rich_help_panel=LIMITS_PANEL,
            help="Requests that may wait for the batch before 429.")] = limits.MAX_QUEUE,
        request_timeout: Annotated[float, typer.Option(
            "--request-timeout", min=1.0, rich_help_panel=LIMITS_PANEL,
            help="Seconds a client may take to send a request's headers (its body gets three times as long)."
        )] = limits.HEADER_TIMEOUT,
        client_timeout: Annotated[float, typer.Option(
            "--client-timeout", min=1.0, rich_help_panel=LIMITS_PANEL,
            help="Seconds a client may read nothing before it is dropped and its request cancelled."
        )] = limits.CLIENT_TIMEOUT,
        live_idle_timeout: Annotated[float, typer.Option(
            "--live-idle-timeout", min=1.0, rich_help_panel=LIMITS_PANEL,
            help="Seconds a /v1/audio/speech/stream WebSocket may send nothing, with nothing left to speak, "
                 "before it is closed.")] = 60.0,
        drain_timeout: Annotated[float, typer.Option(
            "--drain-timeout", min=0.0, rich_help_panel=LIMITS_PANEL,
            help="On SIGTERM or Ctrl-C, seconds requests in flight may take before they are cancelled "
                 "(a second signal stops at once).")] = limits.DRAIN_TIMEOUT,
        markdown: opt.Markdown = True,
        lexicon: opt.Lexicon = None,
        max_batch: opt.MaxBatch = None,
        decoder_batch_size: opt.DecoderBatchSize = None,
        cache_size: opt.CacheSize = 100,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only warnings and errors on stderr.")] = False,
        verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug messages and an access log.")] = False,
    ) -> int:
        from soprano_cli.server.app import ServerConfig
        from soprano_cli.server.connections import Deadlines
        from soprano_cli.server.live import LiveLimits
        from soprano_cli.server.local_socket import default_socket_path
        from soprano_cli.server.run import serve

        level = opt.configure_logging(verbose, quiet, default=logging.INFO, names=("soprano_cli", "uvicorn"))
        config = ServerConfig(
            engine=opt.engine_config(model, device, backend, dtype, max_batch, decoder_batch_size, cache_size),
            api_key=_api_key(api_key, api_key_file, on_command_line=opt.source(ctx, "api_key") == "COMMANDLINE"),
            max_input_chars=max_input_chars,
            max_queue=max_queue,
            cors_origins=list(cors_origin or []),
            allowed_hosts=list(allowed_host or []),
            deadlines=Deadlines(header_timeout=request_timeout, body_timeout=3 * request_timeout,
                                client_timeout=client_timeout),
            drain_timeout=drain_timeout,
            text=opt.text_options(markdown, lexicon),
            wyoming=_wyoming_address(wyoming),
            live=LiveLimits(idle_timeout=live_idle_timeout),
        )
        path = None if no_socket else (socket_path or default_socket_path())
        if not http and path is None and wyoming is None:
            raise typer.BadParameter("nothing to serve: give --wyoming URI (or drop --no-socket)",
                                     param_hint="--no-http")
        return serve(config, host=host, port=port, socket_path=path, log_level=logging.getLevelName(level).lower(),
                     access_log=verbose, http=http)


def _wyoming_address(uri: str | None) -> str | None:
    """--wyoming checked before the model loads: tcp://HOST:PORT or unix://PATH."""
    if uri is None:
        return None
    from soprano_cli.errors import ServerError
    from soprano_cli.server.wyoming_server import parse_address

    try:
        return str(parse_address(uri))
    except ServerError as error:
        raise typer.BadParameter(error.message, param_hint="--wyoming") from None


def _api_key(key: str | None, path: Path | None, *, on_command_line: bool) -> str | None:
    """The key from --api-key-file, $SOPRANO_API_KEY or --api-key."""
    if path is not None:
        if on_command_line:
            raise typer.BadParameter("give the key once: --api-key-file or --api-key", param_hint="--api-key-file")
        try:
            text = path.read_text(encoding="utf-8")
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as error:
            raise typer.BadParameter(f"cannot read {path}: {getattr(error, 'strerror', None) or error}",
                                     param_hint="--api-key-file") from None
        key = text.splitlines()[0].strip() if text.strip() else ""
        if not key:
            raise typer.BadParameter(f"{path} holds no key", param_hint="--api-key-file")
        if mode & 0o077:
            log.warning("%s can be read by other users; chmod 600 it", path)
        return key
    if key is not None and not key.strip():
        raise typer.BadParameter("the key is empty", param_hint="--api-key")
    if on_command_line:
        log.warning("other users can read --api-key in `ps`; pass the key with --api-key-file or SOPRANO_API_KEY")
    return key.strip() if key else None


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
