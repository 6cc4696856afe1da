"""What may reach the routes: the checks every HTTP request passes first, as one pure ASGI middleware.

A daemon on a desktop is reachable by every web page the user opens. Browsers send some
requests cross-site without asking (form and text/plain POSTs), and a page can rebind its own
host name to 127.0.0.1. So, in order: the Host must name this server (421), a cross-site
Origin must have been allowed (403), the API key must match (401), a POST must say it is JSON
(415: the one type a browser cannot send cross-site without a preflight), and its body must
fit (413, before it is read). Every refusal is OpenAI's JSON error shape.

WebSocket handshakes pass the same Host, Origin and key checks: a browser opens a WebSocket to
any address without asking CORS, so the Origin check is all that keeps a hostile page out. A
refused handshake gets the JSON error as its HTTP answer (403 without one where the server
cannot send a body).
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from soprano_cli.server import protocol
from soprano_cli.server.metrics import Metrics
from soprano_cli.server.protocol import APIError

# Routes anyone may GET without the key: the web page (it asks for the key) and liveness probes.
PUBLIC_ROUTES = ("/", "/health")
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
JSON_TYPES = ("application/json",)


class RequestGuard:
    """Host, Origin, key, content type and body size checks, and per-route request counts."""

    def __init__(self, app, *, routes: tuple[str, ...], metrics: Metrics, api_key: str | None = None,
                 allowed_hosts: tuple[str, ...] = (), cors_origins: tuple[str, ...] = (),
                 max_body_bytes: int = 1 << 20):
        self.app = app
        self.routes = routes
        self.metrics = metrics
        self.token = api_key.encode() if api_key else None
        self.allowed_hosts = tuple(host.lower() for host in allowed_hosts)
        self.cors_origins = tuple(origin.rstrip("/").lower() for origin in cors_origins)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            return await self._websocket(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = None

        async def counting_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # Counted as 499 when nothing was answered because the client left (mid-body, or while a
        # complete file was being made): nobody to answer, nothing failed. 500 if an error escaped.
        failed = True
        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                self.metrics.count_error(refusal.body["error"]["type"])
                headers = dict(refusal.headers or {})
                if scope["method"] != "GET":
                    headers["Connection"] = "close"  # its body is never read: the connection cannot be reused
                response = JSONResponse(refusal.body, status_code=refusal.status, headers=headers)
                await response(scope, receive, counting_send)
            else:
                await self.app(scope, self._limited(receive), counting_send)
            failed = False
        except ClientDisconnect:
            failed = False
        finally:
            self.metrics.count_request(route, status if status is not None else 500 if failed else 499)

    async def _websocket(self, scope, receive, send):
        """A WebSocket handshake: refused as an HTTP request would be, else handed on; counted either way."""
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = None

        async def counting_send(message):
            nonlocal status
            if status is None:
                kind = message["type"]
                status = (101 if kind == "websocket.accept" else 403 if kind == "websocket.close"
                          else message.get("status") if kind == "websocket.http.response.start" else None)
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is None:
                await self.app(scope, receive, counting_send)
            else:
                self.metrics.count_error(refusal.body["error"]["type"])
                if "websocket.http.response" in scope.get("extensions", {}):
                    response = JSONResponse(refusal.body, status_code=refusal.status, headers=refusal.headers)
                    await response(scope, receive, counting_send)
                else:
                    await counting_send({"type": "websocket.close", "code": 1008})
        finally:
            self.metrics.count_request(route, status if status is not None else 499)

    def _refusal(self, scope) -> APIError | None:
        headers = _headers(scope)
        host = headers.get(b"host", b"").decode("latin-1")
        # A Unix socket has no Host to rebind, and browsers cannot reach one.
        if scope.get("server") and scope["server"][1] is not None and not self._host_allowed(host, scope):
            return APIError(421, f"this server does not answer to the host name '{host}'; start it with "
                                 "--allowed-host NAME to allow one", code="misdirected_request")
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and not self._origin_allowed(origin, host):
            return APIError(403, f"requests from the web page at {origin} are not allowed; start the server "
                                 "with --cors-origin ORIGIN to allow one", code="cross_origin_forbidden")
        if self.token is not None and scope["path"] not in PUBLIC_ROUTES and not self._authorized(headers):
            return APIError(401, "missing or incorrect API key; send 'Authorization: Bearer <key>'",
                            code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        if scope.get("method") == "POST":
            kind = headers.get(b"content-type", b"").decode("latin-1").partition(";")[0].strip().lower()
            if kind not in JSON_TYPES and not (kind.startswith("application/") and kind.endswith("+json")):
                return APIError(415, f"the request body must be JSON (Content-Type: application/json), "
                                     f"not '{kind or 'none'}'", code="unsupported_media_type")
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                return _too_large(self.max_body_bytes)
        return None

    def _host_allowed(self, host: str, scope) -> bool:
        if not host:
            return True  # HTTP/1.0 without a Host: no browser sends that
        name = _host_name(host)
        if name in LOOPBACK_NAMES or name.endswith(".localhost") or _is_ip(name):
            return True  # an address cannot be rebound to another one
        bound = str(scope["server"][0]).lower()
        return name == bound or "*" in self.allowed_hosts or any(
            name == allowed or (allowed.startswith(".") and name.endswith(allowed)) for allowed in self.allowed_hosts)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.cors_origins or "*" in self.cors_origins:
            return True
        return urlsplit(origin).netloc == host.lower()  # the page this server serves

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, token = headers.get(b"authorization", b"").strip().partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.token)

    def _limited(self, receive):
        """`receive` that fails the request with a 413 once its body passes the limit (chunked bodies too)."""
        received = 0
        limit = self.max_body_bytes

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        return limited_receive


class JSONCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with its preflight refusals in OpenAI's error shape instead of plain text."""

    def preflight_response(self, request_headers):
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}
        body = protocol.error_body(f"{response.body.decode()}; see --cors-origin", "invalid_request_error", None,
                                   "cors_forbidden")
        return JSONResponse(body, status_code=400, headers=headers)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")


def _headers(scope) -> dict[bytes, bytes]:
    return {name: value for name, value in scope.get("headers", ())}


def _host_name(host: str) -> str:
    """`Host` without its port, lower case, brackets gone from an IPv6 address."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
