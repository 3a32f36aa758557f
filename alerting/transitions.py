"""Pure check: does an alert make sense for the incident alerting already knows? (No I/O.)

Alerting pages only transitions a real incident goes through:

- ``confirmed`` opens an incident;
- ``escalated`` only for a confirmed incident that is not cleared;
- ``cleared`` only for a confirmed incident;
- nothing after ``cleared`` (the incident is over);
- every alert of an incident names the camera that confirmed it, and, when cameras are
  configured, a configured (enabled) camera — the aggregator's rule for classifications.

A transition the incident already went through is a ``DUPLICATE`` (a Kafka redelivery, or the
aggregator escalating an incident alerting already escalated): never a second page, but its pages
are queued again, idempotently, so a crash between recording an alert and queueing its pages
loses nothing. Anything else is ``REJECT`` with the reason, for the dead-letter topic.

The caller passes what it knows of the incident (``IncidentFacts``, from Redis); camera-offline
pages reuse the same rules.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from spillwatch.events import AlertState


class Verdict(StrEnum):
    PAGE = "page"
    DUPLICATE = "duplicate"
    REJECT = "reject"


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    reason: str = ""


@dataclass(frozen=True)
class IncidentFacts:
    """What alerting has recorded of an incident: its state, the camera and the states it has been through."""

    state: str | None = None
    camera_id: str | None = None
    seen: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> "IncidentFacts":
        """From the incident hash of ``AlertStore.incident`` (``alert:<state>`` fields mark the states seen)."""
        seen = frozenset(k.split(":", 1)[1] for k in record if k.startswith("alert:"))
        return cls(state=record.get("state"), camera_id=record.get("camera_id"), seen=seen)


def check_transition(
    state: AlertState | str,
    camera_id: str,
    known: IncidentFacts,
    *,
    cameras: Collection[str] = (),
) -> Check:
    """Whether an alert in ``state`` from ``camera_id`` may page, for an incident known as ``known``."""
    st = state.value if isinstance(state, AlertState) else str(state)
    if cameras and camera_id not in cameras:
        return Check(Verdict.REJECT, f"unknown camera {camera_id!r} (not in the configured cameras)")
    if known.camera_id is not None and known.camera_id != camera_id:
        return Check(Verdict.REJECT, f"incident belongs to camera {known.camera_id!r}, not {camera_id!r}")
    confirmed = AlertState.CONFIRMED.value in known.seen
    cleared = known.state == AlertState.CLEARED.value
    if st == AlertState.CONFIRMED.value:
        if confirmed:
            return Check(Verdict.DUPLICATE, "incident already confirmed")
        if known.state is not None:
            return Check(Verdict.REJECT, f"confirmed after {known.state} (an incident opens with confirmed)")
        return Check(Verdict.PAGE)
    if st == AlertState.ESCALATED.value:
        if not confirmed:
            return Check(Verdict.REJECT, "escalated for an incident never confirmed")
        if AlertState.ESCALATED.value in known.seen:
            return Check(Verdict.DUPLICATE, "incident already escalated")
        if cleared:
            return Check(Verdict.REJECT, "escalated after the incident was cleared")
        return Check(Verdict.PAGE)
    if st == AlertState.CLEARED.value:
        if not confirmed:
            return Check(Verdict.REJECT, "cleared for an incident never confirmed")
        if cleared:
            return Check(Verdict.DUPLICATE, "incident already cleared")
        return Check(Verdict.PAGE)
    return Check(Verdict.REJECT, f"unknown state {st!r}")
