"""Acknowledgement HTTP endpoint (http.server in a thread; loopback by default).

- ``POST /incidents/{id}/ack``  JSON ``{"by": str, "note": str, "label": "true"|"false"}`` (all optional)
- ``GET  /incidents/{id}``      incident state, its alerts, pages and acknowledgement
- ``GET  /incidents/{id}/snapshot``  the evidence JPEG (only files under ``alerting.evidence_dir``)
- ``GET  /healthz``             200 when Redis answers and the service threads run, else 503

No authentication: bind it to loopback or put it behind the site's reverse proxy.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from alerting.acks import AckRequest, AckStore
from alerting.notifiers.snapshots import resolve_snapshot
from alerting.store import AlertStore
from spillwatch.events import SpillAlert
from spillwatch.logs import get_logger

log = get_logger("alerting.api")

MAX_BODY = 64 * 1024


def incident_view(incident_id: str, store: AlertStore, acks: AckStore) -> dict[str, Any] | None:
    raw = store.incident(incident_id)
    if not raw:
        return None
    alerts = {k.split(":", 1)[1]: json.loads(v) for k, v in raw.items() if k.startswith("alert:")}
    ack = acks.get(incident_id)
    return {
        "incident_id": incident_id,
        "camera_id": raw.get("camera_id"),
        "state": raw.get("state"),
        "escalated": raw.get("escalated") == "1",
        "alerts": alerts,
        "pages": store.incident_pages(incident_id),
        "ack": ack.model_dump(mode="json") if ack else None,
    }


class AckApi:
    def __init__(
        self,
        host: str,
        port: int,
        acks: AckStore,
        store: AlertStore,
        evidence_dir: Path,
        health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "spillwatch-ack/1"

            def log_message(self, fmt: str, *args: Any) -> None:  # structured logs instead of stderr lines
                log.debug("http", request=fmt % args)

            def _json(self, status: int, obj: Any) -> None:
                body = json.dumps(obj, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _parts(self) -> list[str]:
                return [unquote(p) for p in urlsplit(self.path).path.split("/") if p]

            def do_GET(self) -> None:  # noqa: N802
                parts = self._parts()
                try:
                    if parts == ["healthz"]:
                        h = api.health() if api.health else {"status": "ok"}
                        self._json(200 if h.get("status") == "ok" else 503, h)
                    elif len(parts) == 2 and parts[0] == "incidents":
                        view = incident_view(parts[1], api.store, api.acks)
                        self._json(200, view) if view else self._json(404, {"error": "unknown incident"})
                    elif len(parts) == 3 and parts[0] == "incidents" and parts[2] == "snapshot":
                        self._snapshot(parts[1])
                    else:
                        self._json(404, {"error": "not found"})
                except Exception as exc:  # noqa: BLE001
                    log.warning("api error", path=self.path, error=str(exc))
                    self._json(503, {"error": f"{type(exc).__name__}: {exc}"})

            def _snapshot(self, incident_id: str) -> None:
                raw = api.store.incident(incident_id)
                path = None
                for state in ("confirmed", "escalated", "cleared"):
                    if f"alert:{state}" in raw:
                        alert = SpillAlert.from_bytes(raw[f"alert:{state}"])
                        path = resolve_snapshot(alert.evidence.snapshot_ref, api.evidence_dir)
                        if path:
                            break
                if path is None:
                    self._json(404, {"error": "no snapshot"})
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                parts = self._parts()
                if not (len(parts) == 3 and parts[0] == "incidents" and parts[2] == "ack"):
                    self._json(404, {"error": "not found"})
                    return
                n = int(self.headers.get("Content-Length") or 0)
                if n > MAX_BODY:
                    self._json(413, {"error": "body too large"})
                    return
                body = self.rfile.read(n) if n else b"{}"
                try:
                    req = AckRequest.model_validate_json(body or b"{}")
                except ValidationError as exc:
                    self._json(400, {"error": "invalid ack", "detail": json.loads(exc.json(include_url=False))})
                    return
                try:
                    if not api.store.incident(parts[1]):
                        self._json(404, {"error": "unknown incident"})
                        return
                    ack = api.acks.ack(parts[1], req)
                except Exception as exc:  # noqa: BLE001
                    self._json(503, {"error": f"{type(exc).__name__}: {exc}"})
                    return
                log.info("incident acknowledged", incident=parts[1], by=ack.by, label=ack.label, via="http")
                self._json(200, ack.model_dump(mode="json"))

        self.acks, self.store, self.evidence_dir, self.health = acks, store, evidence_dir, health
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="ack-api")
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(5)
