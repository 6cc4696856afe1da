"""Reading Wyoming events from a client we do not trust.

An event is a JSON header line, then `data_length` bytes of more JSON data and `payload_length`
bytes of payload. The `wyoming` package's own reader takes any size the header names and waits
forever; here the line is capped by the StreamReader's limit, each length by the caller's (or
MAX_PAYLOAD_BYTES), and every wait by a deadline. Anything wrong raises Refusal, whose `code` is
the one the HTTP API would give.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from wyoming.event import Event

MAX_LINE_BYTES = 64 * 1024  # an event's JSON header line (the StreamReader's limit)
MAX_PAYLOAD_BYTES = 64 * 1024  # TTS requests carry none; anything larger is not a TTS client


class Refusal(Exception):
    """End the connection, telling the client why with an `error` event (none when `code` is None)."""

    def __init__(self, message: str, code: str | None = "invalid_event"):
        super().__init__(message)
        self.message = message
        self.code = code


async def read_event(reader: asyncio.StreamReader, *, max_data_bytes: int, idle_timeout: float, body_timeout: float,
                     on_idle: Callable[[], None]) -> Event | None:
    """The next event, or None when the connection ends.

    `on_idle()` runs each time no header line has come for `idle_timeout` seconds: it returns to
    keep waiting or raises Refusal. The data and payload must follow within `body_timeout`.
    """
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), idle_timeout)
            break
        except asyncio.TimeoutError:
            on_idle()  # a cancelled readline leaves what it had read in the buffer
        except ValueError:  # the line passed the reader's limit
            raise Refusal(f"an event header is longer than {MAX_LINE_BYTES} bytes", "request_too_large") from None
    if not line.endswith(b"\n"):
        return None  # the connection ended mid-line
    header = _json_object(line, "an event header")
    if not isinstance(header.get("type"), str):
        raise Refusal("an event header needs a string 'type'")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise Refusal("an event's data must be a JSON object")
    data_length = _length(header, "data_length", max_data_bytes)
    payload_length = _length(header, "payload_length", MAX_PAYLOAD_BYTES)
    try:
        rest = await asyncio.wait_for(reader.readexactly(data_length + payload_length), body_timeout)
    except asyncio.TimeoutError:
        raise Refusal(f"an event's data did not arrive within {body_timeout:g} s", "request_timeout") from None
    except asyncio.IncompleteReadError:
        return None
    if data_length:
        data = {**data, **_json_object(rest[:data_length], "an event's data")}
    return Event(type=header["type"], data=data, payload=rest[data_length:] or None)


def _json_object(raw: bytes, what: str) -> dict:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise Refusal(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise Refusal(f"{what} must be a JSON object")
    return value


def _length(header: dict, name: str, limit: int) -> int:
    value = header.get(name) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Refusal(f"'{name}' must be a non-negative integer")
    if value > limit:
        raise Refusal(f"'{name}' is {value} bytes; the limit is {limit}", "request_too_large")
    return value
