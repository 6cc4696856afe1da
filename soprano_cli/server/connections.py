"""HTTP/1.1 connections with deadlines: uvicorn's h11 protocol, hardened against clients that stall.

uvicorn waits as long as a client likes: for request headers that never finish, for a body
sent a byte a minute, for a reader that stops reading while audio piles up. Here a request's
headers must arrive within `header_timeout` of its first byte (or of the connection), its body
within `body_timeout` of its headers, and a client whose socket accepts nothing for
`client_timeout` is dropped; dropping it cancels its work like any disconnect. Errors the
protocol answers itself (a malformed request, a timeout) are OpenAI-shaped JSON too. A WebSocket
upgrade hands the connection over with no deadline left armed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from soprano_cli.server import limits, protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deadlines:
    """How long a connection may keep the server waiting, in seconds."""

    header_timeout: float = limits.HEADER_TIMEOUT
    body_timeout: float = limits.BODY_TIMEOUT
    client_timeout: float = limits.CLIENT_TIMEOUT  # a reader that takes no bytes for this long is dropped


def protocol_class(deadlines: Deadlines) -> type[H11Protocol]:
    """The protocol class uvicorn's `http=` takes, bound to these deadlines."""
    return type("SopranoH11Protocol", (GuardedH11Protocol,), {"deadlines": deadlines})


class GuardedH11Protocol(H11Protocol):
    deadlines = Deadlines()

    def connection_made(self, transport) -> None:
        self._timer = None
        self._phase = None
        self._stall = None
        self._upgraded = False
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def handle_websocket_upgrade(self, event) -> None:
        # The WebSocket protocol owns the connection from here (with its own pings and limits):
        # this request's body deadline must not close it later.
        self._upgraded = True
        self._cancel_timer()
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc) -> None:
        self._cancel_timer()
        if self._stall is not None:
            self._stall.cancel()
        super().connection_lost(exc)

    # -- reading the request: one deadline for the headers, one for the body ----------------------

    def _watch(self) -> None:
        if self._upgraded:
            return
        state = self.conn.their_state
        if state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            # A fresh connection, or the first bytes of the next request on a kept-alive one
            # (while idle, uvicorn's keep-alive timer is in charge).
            if self._phase != "headers" and (self.cycle is None or self.conn.trailing_data[0]):
                self._arm("headers", self.deadlines.header_timeout)
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body", self.deadlines.body_timeout)
        else:
            self._cancel_timer()

    def _arm(self, phase: str, seconds: float) -> None:
        self._cancel_timer()
        self._phase = phase
        self._timer = self.loop.call_later(seconds, self._timed_out, phase, seconds)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._phase = None, None

    def _timed_out(self, phase: str, seconds: float) -> None:
        self._timer, self._phase = None, None
        if self.transport.is_closing():
            return
        log.debug("closing a connection whose request %s did not arrive within %g s", phase, seconds)
        if self.cycle is None or not self.cycle.response_started:
            self._send_error(408, f"the request {phase} did not arrive within {seconds:g} s", "request_timeout")
        else:
            self.transport.close()

    # -- writing the response: a reader that takes nothing is dropped -----------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self.deadlines.client_timeout, self._drop_stalled_reader)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _drop_stalled_reader(self) -> None:
        self._stall = None
        if not self.transport.is_closing():
            client = "%s:%s" % self.client if self.client else "a Unix socket client"
            log.warning("dropped %s that read nothing for %g s; its request is cancelled", client,
                        self.deadlines.client_timeout)
            self.transport.abort()  # connection_lost: the response sees a disconnect and cancels its job

    # -- errors the protocol answers itself ----------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        self._send_error(400, f"invalid HTTP request: {msg.rstrip('.')}", "invalid_http_request")

    def _send_error(self, status: int, message: str, code: str) -> None:
        body = json.dumps(protocol.error_body(message, "invalid_request_error", None, code)).encode()
        reason = {400: b"Bad Request", 408: b"Request Timeout"}[status]
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n" % (status, reason, len(body)))
        self.transport.write(head + body)
        self.transport.close()
