"""The two kinds of alert alerting pages, one code path for both (pure).

- ``spill`` (:class:`~spillwatch.events.SpillAlert`, topic ``spill-alerts``): ``confirmed`` opens an
  incident, ``escalated``, ``cleared`` ends it.
- ``camera`` (:class:`~spillwatch.events.CameraAlert`, topic ``camera-alerts``): ``offline`` or
  ``stalled`` opens an outage, ``recovered`` ends it.

Both go through the same durable queue, idempotency keys, retries, max age, fallback and dead
letters; only validation, routing and the words on the page differ.
"""

from __future__ import annotations

from typing import Literal

from spillwatch.events import CameraAlert, SpillAlert

Alert = SpillAlert | CameraAlert
Kind = Literal["spill", "camera"]
KINDS: tuple[Kind, ...] = ("spill", "camera")


def kind_of(alert: Alert) -> Kind:
    return "camera" if isinstance(alert, CameraAlert) else "spill"


def parse_alert(raw: str | bytes, kind: str = "spill") -> Alert:
    """The alert a queued page carries (EventError when unreadable, ValueError for an unknown kind)."""
    if kind == "camera":
        return CameraAlert.from_bytes(raw)  # type: ignore[no-any-return]
    if kind == "spill":
        return SpillAlert.from_bytes(raw)  # type: ignore[no-any-return]
    raise ValueError(f"unknown alert kind {kind!r}")
