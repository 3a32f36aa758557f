"""The HTTP edge shared by the webhook, Slack and PagerDuty channels (httpx, sync)."""

from __future__ import annotations

import httpx

from alerting.notifiers.base import DeliveryResult, http_outcome
from spillwatch.redact import redact_text


def make_client(timeout_s: float) -> httpx.Client:
    # No redirects: a page must reach the configured URL, not wherever a 3xx points.
    return httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False)


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> DeliveryResult:
    """POST and map the outcome: timeouts / connection errors retry, bad URLs are permanent.
    Reasons never quote the URL (a Slack or PagerDuty URL is itself a credential) and are redacted."""
    try:
        resp = client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        return DeliveryResult.permanent(f"bad URL: {type(exc).__name__}")
    except httpx.TimeoutException as exc:
        return DeliveryResult.retry(f"timeout: {type(exc).__name__}")
    except httpx.TransportError as exc:
        return DeliveryResult.retry(redact_text(f"connection error: {type(exc).__name__}: {exc}".replace(url, "<url>")))
    return http_outcome(resp.status_code, redact_text(resp.text.strip().replace("\n", " ")[:200]))
