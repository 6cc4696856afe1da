"""The HTTP API: OpenAI's `POST /v1/audio/speech` and friends over one lifespan-loaded engine.

`create_app(config)` builds the FastAPI app; `serve(config, ...)` runs it on TCP and a Unix
socket from one process, as `soprano serve` does. Every error leaves as OpenAI's JSON shape.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from soprano_cli.engine.engine import Engine, EngineConfig
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import InputTextError, OutputError, ServerError, SopranoError
from soprano_cli.model_facts import SAMPLES_PER_FRAME
from soprano_cli.server import limits, protocol
from soprano_cli.server.client import model_digest
from soprano_cli.server.connections import Deadlines
from soprano_cli.server.guard import JSONCORSMiddleware, RequestGuard
from soprano_cli.server.live import LiveLimits
from soprano_cli.server.metrics import Metrics
from soprano_cli.server.protocol import APIError, SpeechRequest, StreamRequest, request_text_options
from soprano_cli.server.scheduler import Scheduler
from soprano_cli.text.lexicon import Lexicon
from soprano_cli.text.lexicon import load as load_lexicon
from soprano_cli.text.options import TextOptions

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).with_name("web")
ROUTES = ("/", "/health", "/metrics", "/v1/models", "/v1/audio/speech", "/v1/soprano/stream", "/v1/audio/voices")
ROUTES += ("/v1/audio/speech/captioned", "/v1/audio/speech/stream")  # timing and live text
# Formats whose encoders do real work (or talk to ffmpeg): run them off the event loop.
_HEAVY_FORMATS = ("flac", "ogg", "opus", "mp3", "aac")
_NO_AUDIO = np.zeros(0, np.float32)


@dataclass
class ServerConfig:
    """What the server loads and how it admits requests."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    api_key: str | None = None  # when set, every route but the web page and /health needs `Authorization: Bearer <key>`
    max_input_chars: int = limits.MAX_INPUT_CHARS  # longest `input` accepted
    max_queue: int = limits.MAX_QUEUE  # requests waiting for the batch before 429
    cors_origins: list[str] = field(default_factory=list)  # empty: no CORS headers, cross-site requests refused
    allowed_hosts: list[str] = field(default_factory=list)  # Host names besides loopback names and addresses
    max_body_bytes: int = 1 << 20  # larger request bodies get a 413 before they are read
    deadlines: Deadlines = field(default_factory=Deadlines)
    drain_timeout: float = limits.DRAIN_TIMEOUT  # after SIGTERM, requests in flight get this long before they are cancelled
    max_backlog_seconds: float = limits.MAX_BACKLOG_SECONDS  # audio a request may have waiting for its reader before it is paused
    warmup: bool = True  # run a few frames at startup so the first request pays no first-call costs
    text: TextOptions = field(default_factory=lambda: TextOptions(markdown=True))  # how requests' text is read
    wyoming: str | None = None  # also speak Wyoming (Home Assistant) here: tcp://HOST:PORT or unix://PATH
    live: LiveLimits = field(default_factory=LiveLimits)  # the WebSocket stream's limits

    @classmethod
    def from_env(cls) -> "ServerConfig":
        """The configuration of `uvicorn soprano_cli.server:app`: SOPRANO_* environment variables."""
        env = os.environ
        engine = EngineConfig(model=env.get("SOPRANO_MODEL") or None)
        for name in ("device", "backend", "dtype"):
            if env.get(f"SOPRANO_{name.upper()}"):
                setattr(engine, name, env[f"SOPRANO_{name.upper()}"])
        if env.get("SOPRANO_MAX_BATCH"):
            engine.max_batch = _env_int("SOPRANO_MAX_BATCH")
        origins = [o.strip() for o in env.get("SOPRANO_CORS_ORIGINS", "").split(",") if o.strip()]
        hosts = [h.strip() for h in env.get("SOPRANO_ALLOWED_HOSTS", "").split(",") if h.strip()]
        text = TextOptions(markdown=True, lexicon=load_lexicon(env["SOPRANO_LEXICON"]) if env.get("SOPRANO_LEXICON") else Lexicon())
        return cls(engine=engine, api_key=env.get("SOPRANO_API_KEY") or None, text=text,
                   max_input_chars=_env_int("SOPRANO_MAX_INPUT_CHARS", limits.MAX_INPUT_CHARS),
                   max_queue=_env_int("SOPRANO_MAX_QUEUE", limits.MAX_QUEUE), cors_origins=origins, allowed_hosts=hosts)


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if not value:
        return default  # type: ignore[return-value]
    try:
        return int(value)
    except ValueError:
        raise ServerError(f"{name} must be an integer, got {value!r}") from None


def model_name(engine: Engine, requested: str | None) -> str:
    """The name the API shows: the hub id the server was started with, else the folder's name."""
    if requested and not Path(requested).expanduser().exists():
        return requested
    return engine.model_dir.name


class _State:
    """What the routes share: the engine, its scheduler, metrics and limits."""

    def __init__(self, config: ServerConfig, engine: Engine, scheduler: Scheduler, metrics: Metrics):
        self.config = config
        self.engine = engine
        self.scheduler = scheduler
        self.metrics = metrics
        self.model = model_name(engine, config.engine.model)
        self.started = time.time()
        self.wyoming = None  # the Wyoming server, when one runs

    def check_model(self, requested: str) -> None:
        """Accept the served model or a compatibility alias; never open what the request names."""
        if requested == self.model or requested in protocol.MODEL_ALIASES:
            return
        raise APIError(404, f"the model '{requested}' does not exist on this server; use '{self.model}' "
                            f"(or one of {', '.join(protocol.MODEL_ALIASES)})", param="model", code="model_not_found")


def create_app(config: ServerConfig | None = None, engine: Engine | None = None, wyoming_socket=None) -> FastAPI:
    """The API app; loads the engine at startup unless one is given. `wyoming_socket`: config.wyoming's,
    already listening (as `soprano serve` takes it before the model loads); bound at startup when None."""
    config = config or ServerConfig.from_env()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loaded = engine or await asyncio.to_thread(Engine.load, config.engine)
        if config.warmup:
            await asyncio.to_thread(loaded.warm_up)
        scheduler = Scheduler(loaded, max_queue=config.max_queue, max_backlog_seconds=config.max_backlog_seconds,
                              metrics=metrics)
        scheduler.start()
        app.state.soprano = _State(config, loaded, scheduler, metrics)
        log.info("serving %s", app.state.soprano.model)
        wyoming = await _start_wyoming(app.state.soprano, wyoming_socket)
        try:
            yield
        finally:
            if wyoming is not None:
                await wyoming.stop(config.drain_timeout)
            await asyncio.to_thread(scheduler.stop)

    app = FastAPI(title="Soprano TTS", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    _install_error_handlers(app, metrics)
    _add_routes(app)
    # Starlette runs the last added middleware first: CORS answers preflights before the key check.
    app.add_middleware(RequestGuard, routes=ROUTES, metrics=metrics, api_key=config.api_key,
                       allowed_hosts=tuple(config.allowed_hosts), cors_origins=tuple(config.cors_origins),
                       max_body_bytes=config.max_body_bytes)
    if config.cors_origins:
        app.add_middleware(JSONCORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


async def _start_wyoming(state: "_State", sock):
    """The Wyoming server on the same engine and batch (see wyoming_server.py), when config.wyoming asks for it."""
    if not state.config.wyoming:
        return None
    from soprano_cli.server import wyoming_server

    if sock is None:
        sock = wyoming_server.listen(wyoming_server.parse_address(state.config.wyoming))
    state.wyoming = wyoming_server.WyomingServer(state, sock)
    await state.wyoming.start()
    log.info("speaking Wyoming on %s", state.config.wyoming)
    return state.wyoming


# -- middleware and errors -----------------------------------------------------------------------


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    def render(error: APIError) -> JSONResponse:
        metrics.count_error(error.body["error"]["type"])
        return JSONResponse(error.body, status_code=error.status, headers=error.headers)

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        return render(error)

    @app.exception_handler(SopranoError)
    async def soprano_error(request: Request, error: SopranoError):
        return render(APIError.from_soprano(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return render(APIError(error.status_code, str(error.detail), error_type=kind))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        # Starlette logs the traceback; the client gets the usual shape, not "Internal Server Error".
        return render(APIError(500, "the server failed to handle this request; see its log", error_type="server_error"))


async def _json_object(request: Request, model):
    """Parse the body as JSON into `model`, or raise a 400 that names the problem."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise APIError(400, f"the request body is not valid JSON: {error}", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        message, param = protocol.validation_message(error.errors())
        code = "missing_required_parameter" if "missing" in message else "invalid_type"
        raise APIError(400, message, param=param, code=code) from None


# -- routes --------------------------------------------------------------------------------------


def _add_routes(app: FastAPI) -> None:
    @app.get("/health")
    async def health(request: Request):
        state: _State = request.app.state.soprano
        return {"status": "ok", "model": state.model, "model_digest": model_digest(state.engine.model_dir),
                "max_batch": state.engine.config.max_batch, "device": str(state.engine.device),
                # What clients compare with the engine they were asked for (see client.engine_mismatch).
                "backend": state.engine.backend, "dtype": state.engine.dtype,
                "decoder_dtype": state.engine.decoder_dtype, "queue_depth": state.scheduler.queue_depth,
                "uptime_s": round(time.time() - state.started, 3)}

    @app.get("/v1/models")
    async def models(request: Request):
        state: _State = request.app.state.soprano
        names = [state.model, *(a for a in protocol.MODEL_ALIASES if a != state.model)]
        created = int(state.started)
        return {"object": "list",
                "data": [{"id": name, "object": "model", "created": created, "owned_by": "soprano"} for name in names]}

    @app.get("/metrics")
    async def metrics(request: Request):
        state: _State = request.app.state.soprano
        return PlainTextResponse(state.metrics.render(state.model), media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def index():
        return HTMLResponse((WEB_DIR / "index.html").read_text(encoding="utf-8"))

    _add_compatibility_routes(app)

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        state: _State = request.app.state.soprano
        body: SpeechRequest = await _json_object(request, SpeechRequest)
        return _speech_response(state, body)

    @app.post("/v1/soprano/stream")
    async def stream(request: Request):
        state: _State = request.app.state.soprano
        body: StreamRequest = await _json_object(request, StreamRequest)
        return _frames_response(state, body)

    @app.post("/v1/audio/speech/captioned")
    async def captioned(request: Request):
        from soprano_cli.server.captioned import CaptionedSpeechRequest, Cues

        state: _State = request.app.state.soprano
        body: CaptionedSpeechRequest = await _json_object(request, CaptionedSpeechRequest)
        cues = Cues()
        speech = body.speech()
        return _speech_response(state, speech, on_cue=cues.add,
                                render=lambda audio, headers: cues.response(audio, body, headers))

    @app.websocket("/v1/audio/speech/stream")
    async def live(websocket: WebSocket):
        from soprano_cli.server.live import live_speech

        await live_speech(websocket)


def _add_compatibility_routes(app: FastAPI) -> None:
    """What clients of other TTS servers look up: the voice list (Open WebUI's shape) and one model by id."""

    @app.get("/v1/audio/voices")
    async def voices():
        voice = {"id": protocol.VOICE, "name": protocol.VOICE, "languages": list(protocol.VOICE_LANGUAGES)}
        return {"voices": [voice], "default": protocol.VOICE,
                # OpenAI's names, which clients send unasked; any other name selects Soprano's voice too.
                "aliases": {name: protocol.VOICE for name in protocol.OPENAI_VOICES}}

    @app.get("/v1/models/{model_id:path}")
    async def model(request: Request, model_id: str):
        state: _State = request.app.state.soprano
        state.check_model(model_id)
        return {"id": model_id, "object": "model", "created": int(state.started), "owned_by": "soprano"}


def _speech_response(state: _State, body: SpeechRequest, *, on_cue=None, render=None) -> StreamingResponse:
    """The speech for `body`; `on_cue` gets each sentence's cue, `render` makes the response of a complete file."""
    from soprano_cli.audio.formats import MEDIA_TYPES, check_format, open_encoder
    from soprano_cli.server.complete import ByteSink, CompleteFileResponse, FileSink
    from soprano_cli.audio.post import AudioOptions, SentenceAudio
    from soprano_cli.text.markup import MarkupError
    from soprano_cli.text.script import script_from_text

    state.check_model(body.model)
    if not body.input.strip():
        raise APIError(400, "'input' is empty; give the text to speak", param="input", code="empty_input")
    limit = state.config.max_input_chars
    if len(body.input) > limit:
        raise APIError(400, f"'input' is {len(body.input)} characters; the limit is {limit}", param="input",
                       code="string_above_max_length")
    try:
        fmt = check_format(body.response_format)
    except OutputError as error:
        raise APIError(400, error.message, param="response_format", code="invalid_value") from None
    if body.stream_format not in ("audio", "sse"):
        raise APIError(400, f"unknown stream_format '{body.stream_format}'; use 'audio' or 'sse'",
                       param="stream_format", code="invalid_value")
    if body.stream_format == "sse" and not body.stream:
        raise APIError(400, "stream_format 'sse' sends audio as it is made; for one complete file with "
                            "stream: false, use stream_format 'audio'", param="stream", code="unsupported_value")
    audio_options = AudioOptions(speed=body.speed, volume=body.volume_multiplier, loudness=body.loudness).validated(
        {"volume": "volume_multiplier"})
    params = SamplingParams(temperature=body.temperature, top_p=body.top_p, repetition_penalty=body.repetition_penalty,
                            seed=body.seed, max_new_tokens=body.max_new_tokens).validated()
    rate = body.sample_rate if body.sample_rate is not None else (protocol.PCM_DEFAULT_RATE if fmt == "pcm" else None)
    try:  # [pause:] tags and SSML (text/markup.py): sentences, and the pauses between them
        sentences, script = script_from_text(body.input, normalize=body.normalize,
                                             options=request_text_options(state.config.text, body.normalization_options))
    except MarkupError as error:
        raise APIError(400, error.message, param="input", code=error.error_code) from None
    if not sentences:
        raise InputTextError("'input' has nothing to speak after normalization", param="input")
    job = state.scheduler.submit(sentences, params)  # admission (429) before any encoder or ffmpeg starts
    sink = ByteSink() if body.stream else FileSink()  # a FileSink can seek: headers get their lengths
    try:
        encoder = open_encoder(fmt, sink, input_rate=state.engine.sample_rate, output_rate=rate,
                               sample_format=body.sample_format)
    except SopranoError as error:
        state.scheduler.cancel(job)
        param = error.param or "response_format"
        raise APIError(400, error.message, param=param, code="unsupported_format" if param == "response_format"
                       else "invalid_value") from None
    sse = body.stream_format == "sse"
    headers = {"X-Sample-Rate": str(encoder.sample_rate), "Cache-Control": "no-store"}
    media_type = "text/event-stream" if sse else MEDIA_TYPES[fmt]
    body_state = _Body(job, encoder)
    shaper = SentenceAudio(audio_options, state.engine.sample_rate, script)
    chunks = _speech_chunks(state, body_state, sink, fmt, sse=sse, chars=len(body.input), shaper=shaper,
                           on_cue=on_cue)
    if not body.stream:
        return CompleteFileResponse(chunks, sink, media_type=media_type, headers=headers, render=render,
                                    release=lambda: _release_unstarted(body_state, state.scheduler))
    return _JobResponse(chunks, body_state, state.scheduler, media_type=media_type, headers=headers)


class _Body:
    """A streamed response's job and encoder, and whether its body generator has started."""

    def __init__(self, job, encoder=None):
        self.job = job
        self.encoder = encoder
        self.started = False
        self._codec_lock = threading.Lock()

    def locked(self, call, *args):
        """Run an encoder call alone: a write on a worker thread must end before the encoder is closed."""
        with self._codec_lock:
            return call(*args)


class _JobResponse(StreamingResponse):
    """A streamed body whose job and encoder are released however the response ends: a client that
    leaves before the first byte never starts the body generator, whose own cleanup then never runs."""

    def __init__(self, content, body: _Body, scheduler: Scheduler, **kwargs):
        super().__init__(content, **kwargs)
        self._body = body
        self._scheduler = scheduler

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._body.started:
                # A body cut off at a `yield` (a disconnect) would run its cleanup only when the
                # generator is collected: close it now, which cancels the job and the encoder.
                await self.body_iterator.aclose()
            _release_unstarted(self._body, self._scheduler)


def _release_unstarted(body: _Body, scheduler: Scheduler) -> None:
    """Cancel the job and close the encoder of a body whose generator never ran (its cleanup never will)."""
    if not body.started:
        scheduler.cancel(body.job)
        if body.encoder is not None:
            _close_quietly(body.encoder)


async def _speech_chunks(state: _State, body: _Body, sink, fmt: str, *, sse: bool, chars: int,
                         shaper, on_cue=None):
    """The response body: encoded audio (or SSE events, with each sentence's timing) as the scheduler hands over chunks."""
    from soprano_cli.audio.captions import CueClock

    body.started = True
    clock = CueClock(state.engine.sample_rate)
    job, encoder = body.job, body.encoder
    started = time.perf_counter()
    ttfb = None
    samples = 0
    completed = False
    heavy = fmt in _HEAVY_FORMATS
    busy = shaper.options.speed != 1.0 or shaper.options.loudness is not None
    state.metrics.speech_started()

    def wrap(data: bytes) -> bytes:
        if not sse:
            return data
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
        return f"data: {json.dumps(event)}\n\n".encode()

    try:
        head = sink.take()  # a WAV header goes out at once
        if head:
            yield wrap(head)
        async for output in _then_end(job.outputs()):
            # Speed, gain and pauses (audio/post.py); None marks the end: the pause after the last sentence.
            chunk = output.chunk if output is not None else None
            if chunk is None:
                lead, speech = shaper.end(), _NO_AUDIO
            elif busy:  # stretching and measuring loudness take milliseconds: not on the event loop
                lead, speech = await asyncio.to_thread(shaper.take_apart, chunk.sentence, chunk.audio, chunk.final)
            else:
                lead, speech = shaper.take_apart(chunk.sentence, chunk.audio, chunk.final)
            audio = np.concatenate([lead, speech]) if lead.size else speech
            clock.skip(len(lead))  # a pause is in no sentence's cue
            samples += len(audio)
            if heavy:
                await asyncio.to_thread(body.locked, encoder.write, audio)
            else:
                encoder.write(audio)
            data = sink.take()
            if data:
                ttfb = ttfb if ttfb is not None else time.perf_counter() - started
                yield wrap(data)
            cue = None if chunk is None else clock.write(len(speech), final=chunk.final, text=chunk.text)
            if cue is not None:
                if on_cue is not None:
                    on_cue(chunk.sentence, cue)
                if sse:  # after the audio it times (an encoder may still hold the sentence's last samples)
                    yield f"data: {json.dumps(protocol.sentence_event(chunk.sentence, cue))}\n\n".encode()
        if heavy:
            await asyncio.to_thread(body.locked, encoder.close)
        else:
            encoder.close()
        data = sink.take()
        if data:
            yield wrap(data)
        if sse:
            frames = samples // SAMPLES_PER_FRAME
            usage = {"input_tokens": chars, "output_tokens": frames, "total_tokens": chars + frames}
            yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()
        completed = True
    finally:
        if not completed:
            state.scheduler.cancel(job)
            body.locked(_close_quietly, encoder)  # after a write a cancelled await left running in its thread
        state.metrics.speech_finished(audio_seconds=samples / state.engine.sample_rate,
                                      wall_seconds=time.perf_counter() - started, ttfb=ttfb,
                                      cancelled=not completed)


async def _then_end(outputs):
    """The job's outputs, then None."""
    async for output in outputs:
        yield output
    yield None


def _frames_response(state: _State, body: StreamRequest) -> StreamingResponse:
    from soprano_cli.text.pipeline import speakable

    limit = state.config.max_input_chars
    for i, sentence in enumerate(body.sentences):
        if len(sentence) > limit:
            raise APIError(400, f"sentence {i + 1} is {len(sentence)} characters; the limit is {limit}",
                           param="sentences", code="string_above_max_length")
        if not speakable(sentence):
            raise APIError(400, f"sentence {i + 1} has nothing to speak", param="sentences", code="empty_input")
    params = SamplingParams(temperature=body.temperature, top_p=body.top_p,
                            repetition_penalty=body.repetition_penalty, seed=body.seed,
                            max_new_tokens=body.max_new_tokens, retries=body.retries).validated()
    job = state.scheduler.submit(body.sentences, params, start_index=body.start_index,
                                 chunk_frames=body.chunk_frames, whole=body.whole)
    body_state = _Body(job)
    return _JobResponse(_frame_chunks(state, body_state), body_state, state.scheduler,
                        media_type=protocol.MEDIA_TYPE_FRAMES)


async def _frame_chunks(state: _State, body: _Body):
    """The body of /v1/soprano/stream: exact float32 chunks, framed (see protocol.py)."""
    body.started = True
    job = body.job
    started = time.perf_counter()
    samples = 0
    completed = False
    state.metrics.speech_started()
    try:
        try:
            async for output in job.outputs():
                chunk = output.chunk
                samples += len(chunk.audio)
                yield protocol.pack_chunk(chunk.sentence, np.asarray(chunk.audio, dtype="<f4").tobytes(),
                                          frames=chunk.frames, final=chunk.final,
                                          finish_reason=chunk.finish_reason, hallucinated=output.hallucinated)
        except SopranoError as error:
            api_error = APIError.from_soprano(error)
            yield protocol.pack_error({**api_error.body, "status": api_error.status})
        completed = True
    finally:
        if not completed:
            state.scheduler.cancel(job)
        state.metrics.speech_finished(audio_seconds=samples / state.engine.sample_rate,
                                      wall_seconds=time.perf_counter() - started, ttfb=None,
                                      cancelled=not completed)


def _close_quietly(encoder) -> None:
    """Release an abandoned encoder (an ffmpeg process, say); its output goes nowhere."""
    try:
        encoder.close()
    except (SopranoError, OSError, ValueError) as error:
        log.debug("closing an abandoned encoder: %s", error)
