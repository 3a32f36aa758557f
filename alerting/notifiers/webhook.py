"""Generic JSON webhook, HMAC-SHA256 signed.

Headers on every request:

- ``X-SpillWatch-Timestamp``: unix seconds (an integer) when this try was sent;
- ``Idempotency-Key``: ``<incident id>:<state>``, the same on every retry and every channel:
  receivers de-duplicate on it;
- ``X-SpillWatch-Signature``: ``sha256=<hex HMAC-SHA256(secret, timestamp + "\\n" + idempotency key
  + "\\n" + body)>`` — the timestamp and the key are inside the MAC, so a captured request can
  neither be replayed later with a fresh timestamp nor under another key (a second page past the
  receiver's de-duplication); receivers reject timestamps that are not plain integers or are more
  than a tolerance away from their clock (:func:`verify`);
- ``X-SpillWatch-Attempt``: 1-based try number (not signed: information only).

A webhook without a secret is a configuration error unless ``alerting.webhook_allow_unsigned``
is set (then every page goes out without the signature header, and the service says so loudly).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from typing import Any

import httpx

from alerting.formatting import summary
from alerting.notifiers.base import DeliveryResult, Page
from alerting.notifiers.http import make_client, post
from alerting.notifiers.links import page_links
from spillwatch.events import CameraAlert

SIGNATURE_HEADER = "X-SpillWatch-Signature"
TIMESTAMP_HEADER = "X-SpillWatch-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-SpillWatch-Attempt"
PAYLOAD_TYPE = "spillwatch.page"


def build_payload(page: Page, public_base_url: str | None = None) -> dict[str, Any]:
    """``event``: ``spill.<state>`` or ``camera.<state>`` (``camera.offline``, ``camera.stalled``,
    ``camera.recovered``); ``alert``: the SpillAlert or CameraAlert as it travelled."""
    alert = page.alert
    links = page_links(page, public_base_url)
    if isinstance(alert, CameraAlert):
        return {
            "type": PAYLOAD_TYPE,
            "v": 1,
            "idempotency_key": page.idempotency_key,
            "event": f"camera.{alert.state.value}",
            "summary": summary(alert),
            "incident_id": alert.incident_id,
            "camera_id": alert.camera_id,
            "state": alert.state.value,
            "alert": alert.model_dump(mode="json"),
            "camera_url": links.incident_url,
        }
    return {
        "type": PAYLOAD_TYPE,
        "v": 1,
        "idempotency_key": page.idempotency_key,
        "event": f"spill.{alert.state.value}",
        "summary": summary(alert),
        "incident_id": alert.incident_id,
        "camera_id": alert.camera_id,
        "state": alert.state.value,
        "alert": alert.model_dump(mode="json"),
        "snapshot": {"path": str(page.snapshot) if page.snapshot else None, "url": links.snapshot_url},
        "incident_url": links.incident_url,
        "ack_url": links.ack_url,
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # unix seconds: digits only (no "nan", "inf", "1e9", sign)
_KEY = re.compile(r"[\x21-\x7e]{1,512}")  # printable ASCII, no spaces or line breaks


def signed_message(timestamp: str, idempotency_key: str, body: bytes) -> bytes:
    """The bytes the signature covers: ``timestamp \\n idempotency key \\n body``."""
    return timestamp.encode() + b"\n" + idempotency_key.encode() + b"\n" + body


def sign(secret: bytes, timestamp: str, idempotency_key: str, body: bytes) -> str:
    if not secret:
        raise ValueError("an empty secret signs nothing")
    if not _TIMESTAMP.fullmatch(timestamp) or not _KEY.fullmatch(idempotency_key):
        raise ValueError("timestamp must be integer unix seconds and the key printable ASCII")
    mac = hmac.new(secret, signed_message(timestamp, idempotency_key, body), hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(
    secret: bytes,
    timestamp: str | None,
    idempotency_key: str | None,
    body: bytes,
    signature: str | None,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """True when ``signature`` is the MAC of ``timestamp \\n key \\n body`` under ``secret`` and the
    timestamp is an integer within ``tolerance_s`` of ``now`` (either side)."""
    if not secret or not timestamp or not idempotency_key or not signature:
        return False
    if not _TIMESTAMP.fullmatch(timestamp) or not _KEY.fullmatch(idempotency_key):
        return False
    clock = time.time() if now is None else now
    if not (math.isfinite(clock) and math.isfinite(tolerance_s)) or abs(clock - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, idempotency_key, body), signature)


def build_headers(page: Page, body: bytes, secret: bytes | None, timestamp: str) -> dict[str, str]:
    key = page.idempotency_key
    headers = {
        TIMESTAMP_HEADER: timestamp,
        IDEMPOTENCY_HEADER: key,
        ATTEMPT_HEADER: str(page.attempt),
        "User-Agent": "spillwatch-alerting/1",
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, key, body)
    return headers


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        secret: bytes | None,
        *,
        timeout_s: float = 5.0,
        public_base_url: str | None = None,
        name: str = "webhook",
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self._secret = secret
        self._public = public_base_url
        self._client = client or make_client(timeout_s)

    def send(self, page: Page) -> DeliveryResult:
        body = encode(build_payload(page, self._public))
        headers = build_headers(page, body, self._secret, str(int(time.time())))
        return post(self._client, self.url, body, headers)

    def close(self) -> None:
        self._client.close()
