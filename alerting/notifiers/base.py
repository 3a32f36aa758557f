"""The channel interface shared by every notifier, plus the pure HTTP outcome rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from alerting.kinds import Alert

# A snapshot bigger than this is referenced, never attached (mail servers reject huge messages).
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Page:
    """One page to deliver: an alert (a spill incident's or a camera outage's), to one channel, on
    a given try (1-based)."""

    alert: Alert
    channel: str
    attempt: int = 1
    snapshot: Path | None = None  # the evidence JPEG, already resolved and checked (see snapshots.py)

    @property
    def idempotency_key(self) -> str:
        """Same for every try and every channel of one incident state: receivers dedupe on it."""
        return f"{self.alert.incident_id}:{self.alert.state.value}"


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    retryable: bool = False
    reason: str = ""
    status: int | None = None

    @classmethod
    def sent(cls, reason: str = "ok", status: int | None = None) -> DeliveryResult:
        return cls(ok=True, reason=reason, status=status)

    @classmethod
    def retry(cls, reason: str, status: int | None = None) -> DeliveryResult:
        return cls(ok=False, retryable=True, reason=reason, status=status)

    @classmethod
    def permanent(cls, reason: str, status: int | None = None) -> DeliveryResult:
        return cls(ok=False, retryable=False, reason=reason, status=status)


class Notifier(Protocol):
    """A channel. ``send`` never raises for delivery problems: it returns a DeliveryResult."""

    name: str

    def send(self, page: Page) -> DeliveryResult: ...

    def close(self) -> None: ...


class ConfigError(ValueError):
    """A channel is listed but its settings are missing or invalid."""


def http_outcome(status: int, body_excerpt: str = "") -> DeliveryResult:
    """2xx = sent; 408, 429 and 5xx = retry; any other 4xx (and 1xx/3xx) = permanent failure."""
    detail = f"HTTP {status}" + (f": {body_excerpt[:200]}" if body_excerpt else "")
    if 200 <= status < 300:
        return DeliveryResult.sent(f"HTTP {status}", status)
    if status in (408, 429) or status >= 500:
        return DeliveryResult.retry(detail, status)
    return DeliveryResult.permanent(detail, status)
