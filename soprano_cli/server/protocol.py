"""Wire formats of the HTTP API: the OpenAI speech request, OpenAI-shaped errors, the framed chunk stream."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from soprano_cli.errors import InvalidParameterError, ServerError, SopranoError
from soprano_cli.model_facts import MAX_NEW_TOKENS, REPETITION_PENALTY, RETRIES, TEMPERATURE, TOP_P
from soprano_cli.text.lexicon import from_words
from soprano_cli.text.options import TextOptions

# Names the server answers to besides its own model, so that OpenAI clients work unchanged.
MODEL_ALIASES = ("soprano", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# Soprano has one voice. OpenAI's voice names (what clients send by default) are listed as its
# aliases by /v1/audio/voices; any other name, or none, selects it too, as it always has.
VOICE = "soprano"
VOICE_LANGUAGES = ("en-US", "en")  # American English; "en" so that clients matching a bare language find it
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")
VOICES_ACCEPTED = "any"
# Where the weights come from (Wyoming's attribution; Home Assistant shows it).
MODEL_AUTHOR = "ekwek"
MODEL_URL = "https://huggingface.co/ekwek/Soprano-1.1-80M"

# pcm's output rate when the request names none: 24 kHz s16le, as OpenAI clients assume (the
# other formats keep the model's own rate).
PCM_DEFAULT_RATE = 24000
# /v1/soprano/stream: sentences per request (clients split more into several requests), and the
# largest sentence index, which the frame header holds in 32 bits.
MAX_STREAM_SENTENCES = 64
MAX_SENTENCE_INDEX = 2**32 - 1


class NormalizationOptions(BaseModel):
    """`normalization_options` of a speech request (as Kokoro-FastAPI's): unset fields keep the server's choice."""

    model_config = ConfigDict(extra="forbid")

    markdown: bool | None = None  # markdown to plain text, emoji dropped (the server's default: on)
    urls: bool | None = None  # read web addresses aloud; false: leave them as written
    emails: bool | None = None
    phone_numbers: bool | None = None
    lexicon: dict[str, str] | None = None  # word -> spoken form, added to the server's lexicon (no regexes)


class SpeechRequest(BaseModel):
    """`POST /v1/audio/speech`, as OpenAI defines it, plus Soprano's sampling extensions."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str
    voice: str | dict | None = None  # accepted for compatibility; one voice
    instructions: str | None = None  # gpt-4o-mini-tts's steering text; accepted, ignored
    response_format: str = "mp3"
    speed: float = 1.0  # 0.25-4.0, pitch kept (audio/stretch.py)
    stream_format: str = "audio"  # "audio" (chunked bytes) or "sse" (speech.audio.delta events)
    # Extensions.
    stream: bool = True  # false: one complete file with its lengths and a Content-Length (as Kokoro-FastAPI)
    temperature: float = TEMPERATURE
    top_p: float = TOP_P
    repetition_penalty: float = REPETITION_PENALTY
    seed: int | None = None
    max_new_tokens: int = MAX_NEW_TOKENS  # frames cap per sentence (random checkpoints never stop by themselves)
    normalize: bool = True
    normalization_options: NormalizationOptions | None = None
    sample_rate: int | None = None
    volume_multiplier: float = 1.0  # gain (as Kokoro-FastAPI's); past full scale is clipped
    loudness: float | None = None  # target integrated loudness in LUFS, e.g. -16
    sample_format: str = "s16"  # "f32": wav and pcm as 32-bit floats, the model's samples exactly


class StreamRequest(BaseModel):
    """`POST /v1/soprano/stream`: already-split sentences for `soprano synth` through a daemon."""

    model_config = ConfigDict(extra="forbid")

    sentences: list[str] = Field(min_length=1, max_length=MAX_STREAM_SENTENCES)
    # The index of the first sentence in the caller's text (seeds sampling).
    start_index: int = Field(default=0, ge=0, le=MAX_SENTENCE_INDEX - MAX_STREAM_SENTENCES)
    temperature: float = TEMPERATURE
    top_p: float = TOP_P
    repetition_penalty: float = REPETITION_PENALTY
    seed: int | None = None
    max_new_tokens: int = MAX_NEW_TOKENS
    retries: int = RETRIES
    chunk_frames: int = Field(default=1, ge=1, le=1024)  # above a sentence's frames: one piece per sentence
    whole: bool = False  # one chunk per sentence, decoded in one piece and retried like Engine.synthesize


def request_text_options(server: TextOptions, request: NormalizationOptions | None) -> TextOptions:
    """The server's text options with a request's `normalization_options` laid over them."""
    if request is None:
        return server
    changes = {name: value for name in ("markdown", "urls", "emails", "phone_numbers")
               if (value := getattr(request, name)) is not None}
    if request.lexicon:
        changes["lexicon"] = server.lexicon.merged(from_words(request.lexicon, param="normalization_options.lexicon"))
    return replace(server, **changes)


# -- sentence timing (SSE, the captioned endpoint, the WebSocket stream) ------------------------

SENTENCE_EVENT = "speech.audio.sentence"


def sentence_cue(index: int, cue: tuple[float, float, str]) -> dict[str, Any]:
    """A spoken sentence's place in the audio, in seconds from its start (millisecond precision)."""
    start, end, text = cue
    return {"index": index, "text": text, "start": round(start, 3), "end": round(end, 3)}


def sentence_event(index: int, cue: tuple[float, float, str]) -> dict[str, Any]:
    """The SSE event sent after a sentence's last `speech.audio.delta`."""
    return {"type": SENTENCE_EVENT, **sentence_cue(index, cue)}


# -- errors -----------------------------------------------------------------------------------


def error_body(message: str, error_type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error envelope."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class APIError(Exception):
    """An HTTP error with an OpenAI-shaped body; raised by route code, rendered by one handler."""

    def __init__(self, status: int, message: str, *, error_type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.body = error_body(message, error_type, param, code)
        self.headers = headers

    @classmethod
    def from_soprano(cls, error: SopranoError) -> "APIError":
        code = getattr(error, "error_code", None) or ("invalid_value" if isinstance(error, InvalidParameterError) else None)
        headers = {"Retry-After": "1"} if error.http_status == 429 else None
        return cls(error.http_status, error.message, error_type=error.error_type, param=error.param, code=code,
                   headers=headers)


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """One readable sentence and the offending parameter from pydantic's error list."""
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "missing":
        return f"missing required parameter '{param}'", param
    if first.get("type") in ("model_attributes_type", "dict_type") and not location:
        return "the request body must be a JSON object", None
    return f"invalid value for '{param}': {first.get('msg', 'invalid')}", param


# -- the framed chunk stream of /v1/soprano/stream ---------------------------------------------
#
# Each frame is a 16-byte header then a payload. Kinds: CHUNK (payload: float32 little-endian
# samples at the model's rate, exactly the engine's chunk) and ERROR (payload: an OpenAI error body as JSON).
# Bit-exact floats are the point: a daemon's audio is the in-process audio.

FRAME_HEADER = struct.Struct("<BBBBIII")  # kind, flags, finish reason, pad, sentence, frames, payload bytes
KIND_CHUNK = 1
KIND_ERROR = 2
FLAG_FINAL = 1
FLAG_HALLUCINATED = 2
FINISH_REASONS = (None, "stop", "length", "hallucination", "cancelled")
MEDIA_TYPE_FRAMES = "application/x-soprano-frames"


@dataclass
class Frame:
    """One decoded frame of the chunk stream."""

    kind: int
    sentence: int
    frames: int
    final: bool
    hallucinated: bool
    finish_reason: str | None
    payload: bytes

    def error(self) -> dict:
        return json.loads(self.payload.decode("utf-8"))


def pack_chunk(sentence: int, samples: bytes, *, frames: int, final: bool, finish_reason: str | None,
               hallucinated: bool = False) -> bytes:
    flags = (FLAG_FINAL if final else 0) | (FLAG_HALLUCINATED if hallucinated else 0)
    reason = FINISH_REASONS.index(finish_reason) if finish_reason in FINISH_REASONS else 0
    return FRAME_HEADER.pack(KIND_CHUNK, flags, reason, 0, sentence, frames, len(samples)) + samples


def pack_error(body: dict) -> bytes:
    payload = json.dumps(body).encode("utf-8")
    return FRAME_HEADER.pack(KIND_ERROR, 0, 0, 0, 0, 0, len(payload)) + payload


def read_frames(read) -> Any:
    """Yield Frames from `read(n)` (a file-like read that returns fewer bytes only at the end)."""
    while True:
        header = _read_exactly(read, FRAME_HEADER.size)
        if not header:
            return
        kind, flags, reason, _, sentence, frames, size = FRAME_HEADER.unpack(header)
        payload = _read_exactly(read, size) if size else b""
        if len(payload) != size:
            raise ServerError("the daemon's stream ended in the middle of a chunk")
        yield Frame(kind, sentence, frames, bool(flags & FLAG_FINAL), bool(flags & FLAG_HALLUCINATED),
                    FINISH_REASONS[reason] if reason < len(FINISH_REASONS) else None, payload)


def _read_exactly(read, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        part = read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    data = b"".join(parts)
    if data and len(data) < size and size == FRAME_HEADER.size:
        raise ServerError("the daemon's stream ended in the middle of a frame header")
    return data
