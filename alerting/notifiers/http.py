"""The HTTP edge shared by the webhook, Slack and PagerDuty channels (httpx, sync)."""

from __future__ import annotations

import httpx

from alerting.notifiers.base import DeliveryResult, http_outcome


def make_client(timeout_s: float) -> httpx.Client:
    # No redirects: a page must reach the configured URL, not wherever a 3xx points.
    return httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False)


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> DeliveryResult:
    """POST and map the outcome: timeouts / connection errors retry, bad URLs are permanent."""
    try:
        resp = client.post(url, content=body, headers={"Content-Type": "application/json", **headers})
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        return DeliveryResult.permanent(f"bad URL: {exc}")
    except httpx.TimeoutException as exc:
        return DeliveryResult.retry(f"timeout: {type(exc).__name__}")
    except httpx.TransportError as exc:
        return DeliveryResult.retry(f"connection error: {type(exc).__name__}: {exc}")
    return http_outcome(resp.status_code, resp.text.strip().replace("\n", " ")[:200])
