"""`/v1/audio/speech/stream`: speech from text that arrives in pieces over a WebSocket, as a language model writes it.

The client sends JSON text messages; the server answers with JSON text messages (markers,
errors) and binary messages (audio):

    → {"type": "start", ...}       optional, first: the fields of a /v1/audio/speech request
                                   (model, response_format "pcm", sample_rate, temperature, seed,
                                   normalize, normalization_options...), and `input` to begin with
    ← {"type": "session", "format": "pcm", "sample_rate": 24000, "model": ...}
    → {"type": "text", "text": "Hel"}   a piece of text (a model's delta); any size, any cut
    ← {"type": "sentence.start", "index": 0, "text": "Hello there."}   as soon as it is complete
    ← binary: s16le samples of that sentence, in pieces as they are made
    ← {"type": "sentence.end", "index": 0, "text": ..., "start": 0.0, "end": 1.216}
    → {"type": "flush"}            the text so far is whole (an answer's end): speak the rest
    ← {"type": "flushed"}          after the last audio of the text before the flush
    → {"type": "close"}            no more text: speak the rest, then
    ← {"type": "done"} and a normal close (1000)
    ← {"type": "error", "error": {OpenAI's error object}} then a close with a code (see CLOSE_CODES)

A sentence is complete when the word after it is whole, or at a line that ends it, or at a
flush (see `pipeline.LiveSentences`). Sentences go into the shared batch as they complete, a few ahead of the one
being sent, and leave in order. Times in the markers count from the start of the connection's
audio; a flush ends the resampler's stream, so the audio of each flushed part equals a
/v1/audio/speech answer for its sentences.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from soprano_cli.audio.captions import CueClock
from soprano_cli.engine.sampling import SamplingParams
from soprano_cli.errors import OutputError, SopranoError
from soprano_cli.server import protocol
from soprano_cli.server.protocol import APIError, SpeechRequest, request_text_options

if TYPE_CHECKING:
    from soprano_cli.server.scheduler import Job

log = logging.getLogger(__name__)

# The close code that goes with an error's HTTP status (RFC 6455 section 7.4.1).
CLOSE_CODES = {413: 1009, 429: 1013, 500: 1011}  # any other status: 1008 (policy violation)
CLOSE_UNSUPPORTED_DATA = 1003  # a binary message from the client
FORMATS = ("pcm",)  # the format whose bytes line up exactly with the sentence markers


@dataclass(frozen=True)
class LiveLimits:
    """What one WebSocket connection may ask of the server."""

    max_message_chars: int = 16384  # one text message (uvicorn drops frames over 4x this unread)
    max_text_chars: int = 200_000  # all the text of one connection
    idle_timeout: float = 60.0  # seconds without a message while nothing is left to speak
    max_ahead: int = 4  # sentences of one connection in the batch at once


class LiveStart(SpeechRequest):
    """The optional first message: a speech request's fields, its `input` the first text."""

    type: Literal["start"] = "start"
    model: str = "soprano"
    input: str = ""
    response_format: str = "pcm"


@dataclass
class _Sentence:
    index: int
    text: str
    job: "Job | None" = None


# The speaker's other items: the session message, and the ends of a flush and of the connection.
_SESSION = "session"
_FLUSH = "flush"
_CLOSE = "close"


class LiveSession:
    """One connection: reads text, speaks sentences in order, and cleans up however it ends."""

    def __init__(self, websocket: WebSocket, state):
        self.ws = websocket
        self.state = state
        self.limits: LiveLimits = state.config.live
        self.params: SamplingParams | None = None
        self.sentences = None  # LiveSentences, from the start message
        self.rate = protocol.PCM_DEFAULT_RATE
        self.items: deque = deque()  # _Sentence, _SESSION, _FLUSH or _CLOSE, in order
        self.session_message: dict = {}
        self.changed = asyncio.Event()  # the speaker has something new to look at
        self.next_index = 0
        self.text_chars = 0
        self.closing = False  # the client sent "close"
        self.encoder = None
        self.sink = None
        self.clock = CueClock(state.engine.sample_rate)
        self._send_lock = asyncio.Lock()

    # -- the connection ------------------------------------------------------------------------

    async def run(self) -> None:
        await self.ws.accept()
        speaker = asyncio.ensure_future(self._speak())
        receiving = None
        try:
            while not speaker.done():
                if receiving is None:
                    receiving = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait({receiving, speaker}, timeout=self.limits.idle_timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done and not self.items:
                    raise APIError(408, f"no message for {self.limits.idle_timeout:g} s; closing",
                                   code="idle_timeout")
                if receiving in done:
                    message, receiving = receiving.result(), None
                    if message["type"] == "websocket.disconnect":
                        return
                    self._take(message)
            speaker.result()  # re-raises what ended it
        except (WebSocketDisconnect, OSError):
            log.debug("a live stream's client went away")
        except asyncio.TimeoutError:
            log.warning("dropped a live stream client that read nothing for %g s",
                        self.state.config.deadlines.client_timeout)
        except Exception as error:  # the connection's last word: an error message, then a close code
            await _stopped(speaker, receiving)
            if isinstance(error, SopranoError):
                error = APIError.from_soprano(error)
            elif not isinstance(error, APIError):
                log.exception("a live stream failed")
                error = APIError(500, "the server failed to speak this text; see its log", error_type="server_error")
            await self._fail(error)
        finally:
            await _stopped(speaker, receiving)
            self._release()

    async def _send(self, message: dict | bytes) -> None:
        # A reader that takes nothing for this long is dropped, as on HTTP (its work is cancelled).
        timeout = self.state.config.deadlines.client_timeout
        async with self._send_lock:
            if isinstance(message, bytes):
                await asyncio.wait_for(self.ws.send_bytes(message), timeout)
            else:
                await asyncio.wait_for(self.ws.send_text(json.dumps(message)), timeout)

    async def _fail(self, error: APIError) -> None:
        self.state.metrics.count_error(error.body["error"]["type"])
        code = CLOSE_UNSUPPORTED_DATA if isinstance(error, _BinaryMessage) else CLOSE_CODES.get(error.status, 1008)
        try:
            await self._send({"type": "error", **error.body})
            await self.ws.close(code, error.body["error"]["message"][:120])
        except (WebSocketDisconnect, OSError, RuntimeError, asyncio.TimeoutError):
            pass

    def _release(self) -> None:
        """Cancel every sentence still in the batch; nothing of this connection outlives it."""
        for item in self.items:
            if isinstance(item, _Sentence) and item.job is not None:
                self.state.scheduler.cancel(item.job)
        self.items.clear()

    # -- reading -------------------------------------------------------------------------------

    def _take(self, message: dict) -> None:
        """One client message: text, flush, close, or (first) start."""
        if message.get("text") is None:
            raise _BinaryMessage()
        raw = message["text"]
        if len(raw) > self.limits.max_message_chars:
            raise APIError(413, f"a message of {len(raw)} characters; the limit is {self.limits.max_message_chars}",
                           code="message_too_large")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            raise APIError(400, "a message is not valid JSON", code="invalid_json") from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise APIError(400, "a message must be a JSON object with a 'type'", param="type", code="invalid_json")
        kind = data["type"]
        if self.closing:
            raise APIError(400, f"a '{kind}' message after 'close'", param="type", code="invalid_value")
        if kind == "start":
            if self.sentences is not None:
                raise APIError(400, "'start' must be the first message", param="type", code="invalid_value")
            self._start(data)
            return
        if self.sentences is None:
            self._start({"type": "start"})
        if kind == "text":
            text = data.get("text")
            if not isinstance(text, str) or set(data) - {"type", "text"}:
                raise APIError(400, "a text message is {\"type\": \"text\", \"text\": \"...\"}", param="text",
                               code="invalid_type")
            self._text(text)
        elif kind in (_FLUSH, _CLOSE) and set(data) == {"type"}:
            self._queue(self.sentences.flush())
            self.items.append(kind)
            self.closing = kind == _CLOSE
            self.changed.set()
        else:
            raise APIError(400, f"unknown message type '{kind}'; use start, text, flush or close", param="type",
                           code="invalid_value")

    def _start(self, data: dict) -> None:
        from soprano_cli.audio.formats import check_format
        from soprano_cli.audio.resample import check_rate
        from soprano_cli.text.pipeline import LiveSentences

        try:
            start = LiveStart.model_validate(data)
        except ValidationError as error:
            message, param = protocol.validation_message(error.errors())
            raise APIError(400, message, param=param, code="invalid_value") from None
        self.state.check_model(start.model)
        try:
            fmt = check_format(start.response_format)
        except OutputError as error:
            raise APIError(400, error.message, param="response_format", code="invalid_value") from None
        if fmt not in FORMATS:
            raise APIError(400, f"the live stream sends {', '.join(FORMATS)}, not {fmt}", param="response_format",
                           code="unsupported_value")
        if start.speed != 1.0:
            raise APIError(400, "speed other than 1.0 is not supported on the live stream", param="speed",
                           code="unsupported_value")
        self.rate = check_rate(start.sample_rate) if start.sample_rate is not None else protocol.PCM_DEFAULT_RATE
        self.params = SamplingParams(temperature=start.temperature, top_p=start.top_p,
                                     repetition_penalty=start.repetition_penalty, seed=start.seed,
                                     max_new_tokens=start.max_new_tokens).validated()
        options = request_text_options(self.state.config.text, start.normalization_options)
        self.sentences = LiveSentences(normalize=start.normalize, options=options,
                                       max_chars=self.state.config.max_input_chars)
        self.session_message = {"type": "session", "model": self.state.model, "format": fmt,
                                 "sample_rate": self.rate}
        self.items.append(_SESSION)
        self.changed.set()
        if start.input:
            self._text(start.input)

    def _text(self, text: str) -> None:
        self.text_chars += len(text)
        if self.text_chars > self.limits.max_text_chars:
            raise APIError(413, f"more than {self.limits.max_text_chars} characters of text on one connection",
                           param="text", code="string_above_max_length")
        self._queue(self.sentences.push(text))

    def _queue(self, sentences: list[str]) -> None:
        for text in sentences:
            self.items.append(_Sentence(self.next_index, text))
            self.next_index += 1
        if sentences:
            self._submit_ahead()
            self.changed.set()

    def _submit_ahead(self) -> None:
        """Hand the batch the next sentences, up to `max_ahead` of this connection at once."""
        ahead = 0
        for item in self.items:
            if not isinstance(item, _Sentence):
                continue
            if item.job is None:
                item.job = self.state.scheduler.submit([item.text], self.params, start_index=item.index)
            ahead += 1
            if ahead >= self.limits.max_ahead:
                return

    # -- speaking ------------------------------------------------------------------------------

    async def _speak(self) -> None:
        while True:
            while not self.items:
                self.changed.clear()
                await self.changed.wait()
            item = self.items[0]
            if item == _SESSION:
                await self._send(self.session_message)
            elif isinstance(item, _Sentence):
                await self._say(item)
            else:
                await self._end_part()
                await self._send({"type": "flushed" if item == _FLUSH else "done"})
                if item == _CLOSE:
                    self.items.popleft()
                    await self.ws.close(1000)
                    return
            self.items.popleft()
            self._submit_ahead()

    async def _say(self, sentence: _Sentence) -> None:
        from soprano_cli.audio.formats import open_encoder
        from soprano_cli.server.complete import ByteSink  # the sink the HTTP stream uses

        if sentence.job is None:
            self._submit_ahead()
        if self.encoder is None:
            self.sink = ByteSink()
            self.encoder = open_encoder("pcm", self.sink, input_rate=self.state.engine.sample_rate,
                                        output_rate=self.rate)
        await self._send({"type": "sentence.start", "index": sentence.index, "text": sentence.text})
        async for output in sentence.job.outputs():
            chunk = output.chunk
            self.encoder.write(chunk.audio)
            data = self.sink.take()
            if data:
                await self._send(data)
            cue = self.clock.write(len(chunk.audio), final=chunk.final, text=chunk.text)
            if cue is not None:
                await self._send({"type": "sentence.end", **protocol.sentence_cue(sentence.index, cue)})
        sentence.job = None  # finished: nothing to cancel

    async def _end_part(self) -> None:
        """A flush or close: send what the resampler still holds; the next sentence starts a new stream."""
        if self.encoder is None:
            return
        encoder, self.encoder = self.encoder, None
        encoder.close()
        data = self.sink.take()
        if data:
            await self._send(data)


class _BinaryMessage(APIError):
    """A binary message where JSON text was expected."""

    def __init__(self):
        super().__init__(400, "send JSON text messages, not binary ones", code="unsupported_data")


async def _stopped(*tasks) -> None:
    """Cancel the tasks still running and wait for them to end."""
    for task in tasks:
        # Again until it ends: before Python 3.12, asyncio.wait_for (around each send) loses a
        # cancel that arrives just as the send completes, and the task would wait on forever.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if task is not None and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at shutdown


async def live_speech(websocket: WebSocket) -> None:
    """The route: one LiveSession per connection."""
    await LiveSession(websocket, websocket.app.state.soprano).run()
