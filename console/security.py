"""The console's HTTP guards, outside the routes (each answers with a clean 4xx, never a traceback):

* ``GuardedH11Protocol`` (uvicorn's h11 protocol + one timer): a connection must deliver a whole
  request (head and body) within ``console.request_timeout_s`` of opening or of its previous
  response, else it is closed. Uvicorn alone closes idle keep-alive connections
  (``console.keep_alive_s``) but waits forever for a request head that never completes (slowloris,
  or a client that connects and says nothing). Malformed framing (``Content-Length: abc``, ``-1``,
  two lengths, bad chunking) is refused by h11 with 400 before any application code runs.
* ``GuardMiddleware`` (ASGI): security headers on every answer; unsafe methods (POST, ...) from
  another origin are refused (``Origin`` / ``Referer`` / ``Sec-Fetch-Site`` must name this site:
  cross-site forms and ``text/plain`` "simple requests" never reach a route); bodies above
  ``console.max_body_bytes`` get 413 (by ``Content-Length`` or by counting a chunked body); a body
  that does not arrive within ``console.request_timeout_s`` gets 408.
* Host names outside ``console.allowed_hosts`` (+ the public URL's host) get 400 (Starlette's
  ``TrustedHostMiddleware``, added in console/app.py): a DNS-rebinding page cannot talk to it.

CSRF tokens for cookie sessions are checked per route (console/app.py); API tokens need none
(browsers never attach them on their own).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit

import h11
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def guarded_protocol(request_timeout_s: float) -> type[H11Protocol]:
    """Uvicorn's h11 protocol with a deadline for each request's head and body."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _graced = False

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def _arm(self, graced: bool = False) -> None:
            self._disarm()
            self._graced = graced
            self._deadline = self.loop.call_later(request_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            responding = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
            if self.conn.their_state == h11.SEND_BODY and not responding and not self._graced:
                self._arm(graced=True)  # the body is late: the app answers 408 (GuardMiddleware); close after one more period
            elif self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not responding:
                self.transport.close()  # no (complete) request in time: free the connection

    return GuardedH11Protocol


class _TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class _TooSlow(HTTPException):
    def __init__(self) -> None:
        super().__init__(408, "request body not received in time")


def same_site(url: str, host: str, public: str | None) -> bool:
    """Whether an ``Origin``/``Referer`` value names this console (its Host, or its public URL). Pure."""
    try:
        netloc = urlsplit(url).netloc.lower()
    except ValueError:
        return False
    if not netloc:
        return False
    if netloc == host.lower():
        return True
    return bool(public) and netloc == urlsplit(public or "").netloc.lower()


def cross_site_reason(method: str, headers: dict[str, str], public: str | None) -> str | None:
    """Why an unsafe request must be refused as cross-site, or None. Pure."""
    if method in SAFE_METHODS:
        return None
    host = headers.get("host", "")
    if headers.get("sec-fetch-site") == "cross-site":
        return "cross-site request"
    origin = headers.get("origin")
    if origin is not None:
        return None if same_site(origin, host, public) else f"origin {origin[:100]!r} is not this site"
    referer = headers.get("referer")
    if referer is not None and not same_site(referer, host, public):
        return "referer is not this site"
    return None


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, timeout_s: float, public_url: str | None) -> None:
        self.app = app
        self.max_body = max_body
        self.timeout_s = timeout_s
        self.public_url = public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        started = False
        static = scope["path"].startswith("/static/")

        async def send_guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                extra = list(SECURITY_HEADERS)
                names = {k.lower() for k, _ in message.get("headers", [])}
                if b"cache-control" not in names:
                    extra.append((b"cache-control", b"public, max-age=300" if static else b"no-store"))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        async def refuse(status: int, error: str) -> None:
            body = json.dumps({"detail": error}).encode()
            await send_guarded({"type": "http.response.start", "status": status,
                                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                            (b"connection", b"close")]})
            await send_guarded({"type": "http.response.body", "body": body})

        reason = cross_site_reason(scope["method"], headers, self.public_url)
        if reason:
            await refuse(403, f"refused: {reason}")
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await refuse(413, f"request body larger than {self.max_body} bytes")
            return

        deadline = time.monotonic() + self.timeout_s
        seen = 0
        body_done = False

        async def receive_guarded() -> Message:
            nonlocal seen, body_done
            if body_done:
                return await receive()  # e.g. a stream waiting for the disconnect: no deadline
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.01, left))
            except TimeoutError:
                raise _TooSlow() from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
                body_done = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, receive_guarded, send_guarded)
        except (_TooLarge, _TooSlow) as exc:  # raised where no route turned it into its answer
            if not started:
                await refuse(exc.status_code, str(exc.detail))
