"""Wyoming, the protocol Home Assistant speaks to local TTS: `soprano serve --wyoming tcp://HOST:PORT`.

Events are the `wyoming` package's own types; reading them is ours (wyoming_events.py), because
its reader trusts the sender. Requests go through the daemon's Scheduler like HTTP ones, so they
share its batch, queue limit and cancellation:

* `describe` -> `info`: one TTS program with one voice, `supports_synthesize_streaming`.
* `synthesize` -> `audio-start`, `audio-chunk`..., `audio-stop`: the text read as
  `/v1/audio/speech` reads its `input`, the same audio as its pcm at 32 kHz.
* `synthesize-start`, `synthesize-chunk`..., `synthesize-stop` -> each chunk of text that `split`
  would make is spoken once it is complete (see pipeline.LiveSentences), framed by its own
  `audio-start` and `audio-stop`, then `synthesize-stopped`. A `synthesize` inside the stream (Home Assistant sends
  the whole text again for older servers) is ignored.

Anything wrong ends the connection with an `error` event whose `code` is the HTTP API's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.ping import Ping, Pong
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from soprano_cli.audio.formats import float_to_int16
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import ServerError, SopranoError
from soprano_cli.server import protocol
from soprano_cli.server.local_socket import listen_unix
from soprano_cli.server.protocol import APIError, SpeechRequest
from soprano_cli.server.wyoming_events import MAX_LINE_BYTES, Refusal, read_event

log = logging.getLogger(__name__)

SCHEMES = ("tcp", "unix")
JOBS_AHEAD = 2  # a connection's jobs in the batch at once: the one being sent and the next
SAMPLE_WIDTH = 2  # s16le, mono


@dataclass(frozen=True)
class Address:
    """Where the Wyoming server listens: tcp://HOST:PORT or unix://PATH."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.scheme == "unix" else f"tcp://{_format_host(self.host)}:{self.port}"


def parse_address(uri: str) -> Address:
    """`tcp://HOST:PORT` or `unix://PATH`; raises ServerError naming what is wrong."""
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise ServerError(f"--wyoming takes tcp://HOST:PORT or unix://PATH, not {uri!r}")
    if parts.scheme == "unix":
        path = parts.netloc + parts.path
        if not path:
            raise ServerError(f"--wyoming {uri!r} names no socket path")
        return Address("unix", path=os.path.expanduser(path))
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ServerError(f"--wyoming {uri!r} needs a host and a port, as in tcp://127.0.0.1:10200")
    return Address("tcp", host=parts.hostname, port=port)


def listen(address: Address) -> socket.socket:
    """A listening socket for `address`, taken before the model loads (as the HTTP port is)."""
    if address.scheme == "unix":
        return listen_unix(Path(address.path), backlog=128, in_use=f"something already listens on {address}")
    try:
        return socket.create_server((address.host, address.port), backlog=128,
                                    family=socket.AF_INET6 if ":" in address.host else socket.AF_INET)
    except OSError as error:
        raise ServerError(f"cannot listen on {address}: {error.strerror or error}") from None


def info_event() -> Event:
    """What `describe` answers: one program, one voice."""
    attribution = Attribution(name=protocol.MODEL_AUTHOR, url=protocol.MODEL_URL)
    from soprano_cli import __version__

    voice = TtsVoice(name=protocol.VOICE, description="Soprano (American English)", attribution=attribution,
                     installed=True, version=None, languages=list(protocol.VOICE_LANGUAGES))
    program = TtsProgram(name="soprano", description="Soprano text to speech", attribution=attribution,
                         installed=True, version=__version__, voices=[voice], supports_synthesize_streaming=True)
    return Info(tts=[program]).event()


class WyomingServer:
    """Accepts Wyoming connections on a socket and speaks through the daemon's scheduler."""

    def __init__(self, state, sock: socket.socket):
        self.state = state  # the HTTP app's shared state: engine, scheduler, metrics, config
        self.sock = sock
        self.path = sock.getsockname() if sock.family == socket.AF_UNIX else None  # removed when we stop
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[_Session] = set()
        self._info = info_event()

    async def start(self) -> None:
        if self.sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(self._accept, sock=self.sock, limit=MAX_LINE_BYTES)
        else:
            self._server = await asyncio.start_server(self._accept, sock=self.sock, limit=MAX_LINE_BYTES)

    async def stop(self, timeout: float) -> None:
        """Take no new connections; requests in flight get `timeout` seconds, then are cut off."""
        if self._server is not None:
            self._server.close()
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        for session in self._sessions:
            session.reader.feed_eof()  # as if each client had sent all it will: what it asked for is still spoken
        tasks = [session.task for session in self._sessions if session.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning("cancelling %d Wyoming request(s) still in flight", len(pending))
            self.abort_all()
            await asyncio.wait(tasks, timeout=5)

    def abort_all(self) -> None:
        """Drop every connection now (a second signal); their jobs are cancelled."""
        for session in list(self._sessions):
            session.writer.transport.abort()
            if session.task is not None:
                session.task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, reader, writer)
        session.task = asyncio.current_task()
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)


class _Session:
    """One client connection: reads events, speaks what they ask for in order."""

    def __init__(self, server: WyomingServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.state = server.state
        self.reader = reader
        self.writer = writer
        self.task: asyncio.Task | None = None
        self.deadlines = self.state.config.deadlines
        self.limit = self.state.config.max_input_chars
        self.speaker = _Speaker(self)
        self.splitter = None  # a LiveSentences while a synthesize-start stream is open
        self.streamed_chars = 0
        self._write_lock = asyncio.Lock()

    async def run(self) -> None:
        speaking = asyncio.create_task(self.speaker.run())
        try:
            while True:
                event = await self._read_event()
                if event is None:
                    break
                self._handle(event)
                if self.speaker.failed:
                    break
                if Describe.is_type(event.type):
                    await self.write(self.server._info)
                elif Ping.is_type(event.type):
                    await self.write(Pong(text=Ping.from_event(event).text).event())
            # The client sent all it will (a half-close, or it left): finish what it asked for.
            self.speaker.close()
            await speaking
        except Refusal as drop:
            self.speaker.cancel()
            if drop.code is not None:
                log.debug("Wyoming client dropped: %s", drop.message)
                try:
                    await self.write(Error(text=drop.message, code=drop.code).event())
                except (Refusal, OSError):
                    pass
        except (ConnectionError, OSError):
            self.speaker.cancel()  # the client went away: its work is cancelled
        except Exception:  # a bug: log it and tell the client, as the HTTP API's 500 handler does
            log.exception("a Wyoming request failed")
            self.speaker.cancel()
            with contextlib.suppress(Exception):
                await self.write(Error(text="the server failed to handle this request; see its log",
                                       code="server_error").event())
        finally:
            self.speaker.cancel()
            if not speaking.done():
                speaking.cancel()
            await asyncio.gather(speaking, return_exceptions=True)
            self.writer.close()

    async def _read_event(self) -> Event | None:
        return await read_event(self.reader, max_data_bytes=MAX_LINE_BYTES + 12 * self.limit,  # even all \u escapes
                                idle_timeout=self.deadlines.client_timeout, body_timeout=self.deadlines.body_timeout,
                                on_idle=self._idle)

    def _idle(self) -> None:
        """The client has said nothing for --client-timeout: fine while it waits for audio, else it goes."""
        if self.speaker.busy:
            return
        if self.splitter is not None:
            raise Refusal(f"no text arrived for {self.deadlines.client_timeout:g} s", "request_timeout")
        raise Refusal("idle", code=None)

    # -- events ----------------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        kind = event.type
        if Synthesize.is_type(kind):
            if self.splitter is None:  # inside a stream it repeats the streamed text: ignored
                text = self._text(event)
                self.speaker.add(self._sentences(text), streamed=False)
        elif SynthesizeStart.is_type(kind):
            if self.splitter is not None:
                raise Refusal("synthesize-start inside a stream; send synthesize-stop first")
            from soprano_cli.text.pipeline import LiveSentences

            # split's chunks (short sentences join a neighbour), as /v1/audio/speech speaks them.
            self.splitter = LiveSentences(normalize=True, options=self.state.config.text, min_seconds=2.0,
                                          max_chars=self.limit)
            self.streamed_chars = 0
            self.speaker.stream_index = self.speaker.stream_samples = 0
        elif SynthesizeChunk.is_type(kind):
            if self.splitter is None:
                raise Refusal("synthesize-chunk outside a stream; send synthesize-start first")
            text = self._text(event)
            self.streamed_chars += len(text)
            if self.streamed_chars > self.limit:
                raise Refusal(f"the streamed text is over {self.limit} characters, the limit",
                            "string_above_max_length")
            with _as_refusal():
                self._speak_streamed(self.splitter.push(text))
        elif SynthesizeStop.is_type(kind):
            if self.splitter is None:
                raise Refusal("synthesize-stop outside a stream; send synthesize-start first")
            with _as_refusal():
                self._speak_streamed(self.splitter.flush())
            self.splitter = None
            self.speaker.add_event(SynthesizeStopped().event())
        # describe and ping are answered by run(); other events (audio, transcripts) are not for a TTS server.

    def _text(self, event: Event) -> str:
        text = event.data.get("text")
        if not isinstance(text, str):
            raise Refusal(f"{event.type} needs a string 'text'", "invalid_type")
        if len(text) > self.limit:
            raise Refusal(f"'text' is {len(text)} characters; the limit is {self.limit}", "string_above_max_length")
        return text

    def _sentences(self, text: str) -> list[str]:
        """The text read as /v1/audio/speech reads its `input`."""
        from soprano_cli.text.pipeline import sentences_from_text

        if not text.strip():
            raise Refusal("'text' is empty; give the text to speak", "empty_input")
        with _as_refusal():
            sentences = sentences_from_text(text, normalize=True, options=self.state.config.text)
        if not sentences:
            raise Refusal("'text' has nothing to speak after normalization", "empty_input")
        return sentences

    def _speak_streamed(self, sentences: list[str]) -> None:
        if sentences:
            self.speaker.add(sentences, streamed=True)

    # -- writing ---------------------------------------------------------------------------------

    async def write(self, event: Event) -> None:
        """One whole event; a client that takes nothing for --client-timeout is dropped."""
        async with self._write_lock:
            try:
                await asyncio.wait_for(async_write_event(event, self.writer), self.deadlines.client_timeout)
            except asyncio.TimeoutError:
                self.writer.transport.abort()
                raise ConnectionError("the client read nothing in time") from None


@dataclass
class _Utterance:
    """Sentences to speak with one framing: one audio-start/stop for all (synthesize) or one per sentence (a stream)."""

    sentences: list[str]
    streamed: bool
    start_index: int = 0
    job: object = None


class _Speaker:
    """Speaks a connection's requests in order; at most JOBS_AHEAD of them are in the batch at once."""

    def __init__(self, session: _Session):
        self.session = session
        self.scheduler = session.state.scheduler
        self.queue: deque = deque()  # _Utterance or Event (written in its turn)
        self.stream_index = 0  # the next streamed sentence's index (seeds sampling as in one request)
        self.stream_samples = 0  # audio sent in this stream so far (its events' timestamps)
        self.failed = False
        self._closed = False
        self._current: _Utterance | None = None
        self._wake = asyncio.Event()

    @property
    def busy(self) -> bool:
        return bool(self.queue) or self._current is not None

    def add(self, sentences: list[str], *, streamed: bool) -> None:
        start = self.stream_index if streamed else 0
        if streamed:
            self.stream_index += len(sentences)
        last = self.queue[-1] if self.queue else None
        if streamed and isinstance(last, _Utterance) and last.streamed and last.job is None:
            last.sentences += sentences  # not in the batch yet: one job for both
        else:
            self.queue.append(_Utterance(sentences, streamed, start_index=start))
        self._submit()
        self._wake.set()

    def add_event(self, event: Event) -> None:
        self.queue.append(event)
        self._wake.set()

    def close(self) -> None:
        """No more requests: run() returns once the queue is spoken."""
        self._closed = True
        self._wake.set()

    def cancel(self) -> None:
        self._closed = True
        for item in [self._current, *self.queue]:
            if isinstance(item, _Utterance) and item.job is not None:
                self.scheduler.cancel(item.job)
        self.queue.clear()
        self._wake.set()

    def _submit(self) -> None:
        """Hand waiting utterances to the scheduler while fewer than JOBS_AHEAD are in it."""
        in_batch = int(self._current is not None)
        for item in self.queue:
            if not isinstance(item, _Utterance):
                continue
            if item.job is None:
                if in_batch >= JOBS_AHEAD:
                    return
                try:
                    item.job = self.scheduler.submit(item.sentences, _default_params(), start_index=item.start_index)
                except SopranoError as error:
                    raise Refusal(error.message, _code(error)) from None
            in_batch += 1

    async def run(self) -> None:
        try:
            while True:
                while not self.queue:
                    if self._closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                item = self.queue.popleft()
                if isinstance(item, Event):
                    await self.session.write(item)
                    continue
                self._current = item
                try:
                    if item.job is None:
                        item.job = self.scheduler.submit(item.sentences, _default_params(),
                                                         start_index=item.start_index)
                    self._submit()  # the next one joins the batch while this one is sent
                    await self._speak(item)
                finally:
                    self._current = None
        except SopranoError as error:
            await self._fail(error.message, _code(error))
        except Refusal as drop:
            await self._fail(drop.message, drop.code)
        except (ConnectionError, OSError):
            self.failed = True
            self.cancel()
            self.session.reader.feed_eof()  # wake the reader: the client is gone

    async def _fail(self, message: str, code: str | None) -> None:
        self.failed = True
        self.cancel()
        try:
            await self.session.write(Error(text=message, code=code).event())
        except (ConnectionError, OSError):
            pass
        self.session.reader.feed_eof()

    async def _speak(self, item: _Utterance) -> None:
        """Forward one job's audio as events; cancels the job if this ends early."""
        state = self.session.state
        rate = state.engine.sample_rate
        fmt = {"rate": rate, "width": SAMPLE_WIDTH, "channels": 1}
        job = item.job
        started = time.perf_counter()
        samples = 0
        base = self.stream_samples if item.streamed else 0  # timestamps run on across a stream
        ttfb = None
        completed = False
        state.metrics.speech_started()
        try:
            if not item.streamed:
                await self.session.write(AudioStart(**fmt, timestamp=0).event())
            opened = False
            async for output in job.outputs():
                chunk = output.chunk
                if item.streamed and not opened:
                    await self.session.write(AudioStart(**fmt, timestamp=_ms(base + samples, rate)).event())
                    opened = True
                audio = float_to_int16(chunk.audio).astype("<i2").tobytes()
                if audio:
                    ttfb = ttfb if ttfb is not None else time.perf_counter() - started
                    chunk_event = AudioChunk(audio=audio, timestamp=_ms(base + samples, rate), **fmt).event()
                    await self.session.write(chunk_event)
                samples += len(chunk.audio)
                if item.streamed and chunk.final:
                    await self.session.write(AudioStop(timestamp=_ms(base + samples, rate)).event())
                    opened = False
            if not item.streamed:
                await self.session.write(AudioStop(timestamp=_ms(samples, rate)).event())
            completed = True
        finally:
            if item.streamed:
                self.stream_samples += samples
            if not completed:
                self.scheduler.cancel(job)
            state.metrics.speech_finished(audio_seconds=samples / rate, wall_seconds=time.perf_counter() - started,
                                          ttfb=ttfb, cancelled=not completed)


def _default_params() -> SamplingParams:
    """The sampling a /v1/audio/speech request gets when it names none (one home: SpeechRequest's defaults)."""
    fields = SpeechRequest.model_fields
    return SamplingParams(temperature=fields["temperature"].default, top_p=fields["top_p"].default,
                          repetition_penalty=fields["repetition_penalty"].default, seed=fields["seed"].default,
                          max_new_tokens=fields["max_new_tokens"].default).validated()


@contextlib.contextmanager
def _as_refusal():
    """A SopranoError from reading text (a bad lexicon, markup) becomes a Refusal with the HTTP API's code."""
    try:
        yield
    except SopranoError as error:
        raise Refusal(error.message, _code(error)) from None


def _code(error: SopranoError) -> str:
    """The `code` the HTTP API gives this error (rate_limit_exceeded, invalid_value...)."""
    return APIError.from_soprano(error).body["error"]["code"] or error.error_type


def _ms(samples: int, rate: int) -> int:
    return samples * 1000 // rate


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
