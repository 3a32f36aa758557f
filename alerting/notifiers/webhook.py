"""Generic JSON webhook, HMAC-SHA256 signed.

Headers on every request:

- ``X-SpillWatch-Timestamp``: unix seconds when this try was sent;
- ``X-SpillWatch-Signature``: ``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`` — the
  timestamp is inside the MAC so a captured request cannot be replayed later with a fresh
  timestamp (receivers reject timestamps older than a tolerance, see :func:`verify`);
- ``Idempotency-Key``: ``<incident id>:<state>``, the same on every retry: receivers dedupe on it;
- ``X-SpillWatch-Attempt``: 1-based try number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from alerting.formatting import summary
from alerting.notifiers.base import DeliveryResult, Page
from alerting.notifiers.http import make_client, post
from alerting.notifiers.links import page_links

SIGNATURE_HEADER = "X-SpillWatch-Signature"
TIMESTAMP_HEADER = "X-SpillWatch-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-SpillWatch-Attempt"
PAYLOAD_TYPE = "spillwatch.page"


def build_payload(page: Page, public_base_url: str | None = None) -> dict[str, Any]:
    alert = page.alert
    links = page_links(page, public_base_url)
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


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify(
    secret: bytes,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """True when ``signature`` is the MAC of ``timestamp.body`` and the timestamp is fresh."""
    if not timestamp or not signature:
        return False
    try:
        ts = float(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def build_headers(page: Page, body: bytes, secret: bytes | None, timestamp: str) -> dict[str, str]:
    headers = {
        TIMESTAMP_HEADER: timestamp,
        IDEMPOTENCY_HEADER: page.idempotency_key,
        ATTEMPT_HEADER: str(page.attempt),
        "User-Agent": "spillwatch-alerting/1",
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
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
