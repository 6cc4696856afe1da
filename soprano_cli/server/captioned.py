"""`POST /v1/audio/speech/captioned`: a whole speech file and its sentence timings in one JSON answer.

As Kokoro-FastAPI's `/dev/captioned_speech`: the audio travels base64-encoded beside a list of
cues (sentence text, start and end in seconds), and optionally the same cues as an SRT or WebVTT
file. The speech request is the one `/v1/audio/speech` takes, made as with `stream: false`.
"""

from __future__ import annotations

import base64

from fastapi.responses import JSONResponse

from soprano_cli.audio.captions import format_captions
from soprano_cli.server.protocol import APIError, SpeechRequest, sentence_cue

CAPTION_FORMATS = ("json", "srt", "vtt")


class CaptionedSpeechRequest(SpeechRequest):
    """A speech request, and the caption file to add to the cues ("json": none)."""

    caption_format: str = "json"

    def speech(self) -> SpeechRequest:
        """The request as /v1/audio/speech makes it: one complete file."""
        if self.caption_format not in CAPTION_FORMATS:
            raise APIError(400, f"unknown caption_format '{self.caption_format}'; use {', '.join(CAPTION_FORMATS)}",
                           param="caption_format", code="invalid_value")
        return self.model_copy(update={"stream": False, "stream_format": "audio"})


class Cues:
    """The cues of one request, collected as its sentences end (the `on_cue` of the speech response)."""

    def __init__(self):
        self.cues: list[tuple[int, tuple[float, float, str]]] = []

    def add(self, index: int, cue: tuple[float, float, str]) -> None:
        self.cues.append((index, cue))

    def response(self, audio: bytes, request: CaptionedSpeechRequest, headers: dict[str, str]) -> JSONResponse:
        """The JSON answer: base64 audio, its format and rate, the cues, and the caption file if asked."""
        body = {"audio": base64.b64encode(audio).decode("ascii"), "audio_format": request.response_format,
                "sample_rate": int(headers["X-Sample-Rate"]),
                "cues": [sentence_cue(index, cue) for index, cue in self.cues]}
        if request.caption_format != "json":
            body["captions"] = format_captions((cue for _, cue in self.cues), request.caption_format)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})
