"""Where a response's encoder writes: `ByteSink` for streamed bodies, `FileSink` for complete files.

Complete files for `stream: false`: the whole text encoded into memory, then sent with its length.

A streamed file cannot go back to its start, so its header leaves the length unknown: WAV sizes
of 0xFFFFFFFF, a FLAC STREAMINFO without total samples, an MP3 whose Xing frame is blank (players
then guess from the bitrate). Encoded into a seekable buffer, each encoder fills those in on close:
WAV RIFF/data sizes, FLAC total samples, the MP3 Xing frame count with the LAME tag's encoder delay
and padding (the exact, gapless length). Ogg (Vorbis, Opus) carries its length in granule
positions either way; pcm's length is its size; ADTS aac has no field for one.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator

from starlette.responses import Response


class FileSink(io.BytesIO):
    """An encoder's sink for a complete file: seekable, and nothing leaves before the end.

    `take()` is what the response may send now (as `ByteSink.take` below): always nothing,
    so the body generator encodes everything and the bytes are read with `getvalue()` at the end.
    """

    def take(self) -> bytes:
        return b""


class CompleteFileResponse(Response):
    """Run the body generator to its end, then answer with the sink's bytes and a Content-Length.

    Nothing is sent while the audio is made, so a client that leaves is noticed by listening for
    `http.disconnect`; the generator is then cancelled, and its own `finally` cancels the
    scheduler's job and closes the encoder. An error raised before the end (a failed job) leaves
    as an ordinary OpenAI error response, since no header has gone out yet.
    """

    def __init__(self, body: AsyncIterator[bytes], sink: FileSink, *, media_type: str, headers: dict[str, str],
                 release=None, render=None):
        super().__init__(media_type=media_type, headers=headers)
        self._release = release  # frees the job and encoder if the generator was cancelled before it started
        self._body = body
        self._sink = sink
        self._headers = headers
        self._render = render  # (bytes, headers) -> the Response to send (the captioned endpoint's JSON); default: the file

    async def __call__(self, scope, receive, send) -> None:
        encoding = asyncio.ensure_future(_drain(self._body))
        left = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait((encoding, left), return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
            if not encoding.done():  # the client left (or the server is stopping)
                encoding.cancel()
                await asyncio.gather(encoding, return_exceptions=True)
            if self._release is not None:
                self._release()
        if encoding.cancelled():
            return
        encoding.result()  # re-raises what failed, for the app's error handlers
        if self._render is not None:
            response = self._render(self._sink.getvalue(), self._headers)
        else:
            response = Response(self._sink.getvalue(), media_type=self.media_type, headers=self._headers)
        await response(scope, receive, send)


async def _drain(body: AsyncIterator[bytes]) -> None:
    try:
        async for _ in body:  # a FileSink hands out nothing until the end
            pass
    finally:
        await body.aclose()


async def _disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class ByteSink:
    """Where an encoder writes; the response takes what has accumulated after each chunk."""

    def __init__(self):
        self._parts: list[bytes] = []
        self._lock = threading.Lock()  # the ffmpeg encoder writes from its pump thread

    def write(self, data) -> int:
        with self._lock:
            self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def seekable(self) -> bool:
        return False

    def take(self) -> bytes:
        with self._lock:
            data, self._parts = b"".join(self._parts), []
        return data
