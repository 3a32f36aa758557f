"""A tiny local webhook receiver for the demo and tests — and the reference of what a receiver does.

Verifies the HMAC signature over timestamp, idempotency key and body (401 when it does not
match, the timestamp is not a fresh integer, or the key is missing), then de-duplicates on the
signed ``Idempotency-Key``: a key it has accepted before is answered 200 ``{"duplicate": true}``
and not recorded again, so a page whose answer was lost on the way back (a timeout, a crash of
the sender after the POST) is never shown twice. Accepted pages are kept in memory and appended
as JSON lines to ``out``; the keys of an existing ``out`` file are loaded at start, so the
de-duplication survives a restart of the receiver.

Test knobs: answer 500 for the first ``fail_for_s`` seconds after start (to exercise retries);
``answer_delay_s`` holds the answer to a newly accepted page back (to make the sender time out
and retry a page that was in fact accepted). ``GET /pages`` lists what it received; ``GET /healthz``.
A receiver without a secret accepts unsigned pages only when ``allow_unsigned`` is set.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alerting.notifiers.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from spillwatch.events import utcnow

MAX_BODY = 1024 * 1024


def _keys_in(out: Path | None) -> list[str]:
    """Idempotency keys of the pages an earlier run recorded in ``out``."""
    if out is None or not out.is_file():
        return []
    keys = []
    for line in out.read_text().splitlines():
        try:
            key = json.loads(line).get("idempotency_key")
        except (ValueError, AttributeError):
            continue
        if key:
            keys.append(key)
    return keys


class WebhookReceiver:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        secret: str | bytes | None = None,
        out: Path | None = None,
        fail_for_s: float = 0.0,
        tolerance_s: float = 300.0,
        allow_unsigned: bool = False,
        answer_delay_s: float = 0.0,
    ) -> None:
        self.secret = (secret.encode() if isinstance(secret, str) else secret) or None
        if self.secret is None and not allow_unsigned:
            raise ValueError("a webhook receiver needs the secret to verify pages (or allow_unsigned=True)")
        self.out = out
        self.fail_for_s = fail_for_s
        self.tolerance_s = tolerance_s
        self.answer_delay_s = answer_delay_s
        self.pages: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []  # 401/400/500 answers, for tests and the demo
        self.duplicates: list[dict[str, Any]] = []  # pages whose key was accepted before (answered 200)
        self._keys: set[str] = set(_keys_in(out))
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="webhook-receiver")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.pages)

    # ------------------------------------------------------------------ handling
    def _decide(self, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        now = time.time()
        if time.monotonic() - self._started < self.fail_for_s:
            return 500, {"error": "failing on purpose (--fail-for)"}
        key = headers.get(IDEMPOTENCY_HEADER)
        if self.secret is not None and not verify(
            self.secret, headers.get(TIMESTAMP_HEADER), key, body, headers.get(SIGNATURE_HEADER),
            now=now, tolerance_s=self.tolerance_s,
        ):
            return 401, {"error": "bad or missing signature"}
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"error": "body is not JSON"}
        record = {
            "received_at": utcnow().isoformat(),
            "idempotency_key": key,
            "attempt": headers.get("X-SpillWatch-Attempt"),
            "verified": self.secret is not None,
            "payload": payload,
        }
        with self._lock:
            if key and key in self._keys:
                self.duplicates.append({"idempotency_key": key, "at": record["received_at"], "attempt": record["attempt"]})
                return 200, {"ok": True, "duplicate": True}
            if key:
                self._keys.add(key)
            self.pages.append(record)
            if self.out is not None:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                with self.out.open("a") as f:
                    f.write(json.dumps(record, separators=(",", ":")) + "\n")
        return 200, {"ok": True, "duplicate": False}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "spillwatch-webhook-receiver/1"

            def log_message(self, fmt: str, *args: Any) -> None:
                return None

            def _json(self, status: int, obj: Any) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (its timeout): it will retry

            def do_POST(self) -> None:  # noqa: N802
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    n = -1
                if n < 0:
                    self._json(400, {"error": "bad Content-Length"})
                    return
                if n > MAX_BODY:
                    self._json(413, {"error": "too large"})
                    return
                body = self.rfile.read(n)
                status, answer = recv._decide(self.headers, body)
                if status == 200 and not answer.get("duplicate") and recv.answer_delay_s > 0:
                    time.sleep(recv.answer_delay_s)  # the first answer of a page is "lost" (late)
                if status != 200:
                    with recv._lock:
                        recv.rejected.append({"status": status, "at": utcnow().isoformat(), "idempotency_key": self.headers.get(IDEMPOTENCY_HEADER)})
                self._json(status, answer)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/pages"):
                    self._json(200, recv.snapshot())
                elif self.path.startswith("/healthz"):
                    self._json(200, {"status": "ok", "pages": len(recv.pages)})
                else:
                    self._json(404, {"error": "not found"})

        return Handler
