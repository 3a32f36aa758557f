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

Camera outages (``check_camera_transition``) follow the same rules with their own states:
``offline`` or ``stalled`` opens an outage (once: the other one is a duplicate), ``recovered``
only for an outage that opened, nothing after ``recovered``. An incident id is of one kind:
a camera alert naming a spill incident (or the reverse) is rejected.

The caller passes what it knows of the incident (``IncidentFacts``, from Redis).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from spillwatch.events import AlertState, CameraAlertState


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
    kind: str | None = None  # "spill" or "camera"; None: nothing recorded yet

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> IncidentFacts:
        """From the incident hash of ``AlertStore.incident`` (``alert:<state>`` fields mark the states
        seen; a record written before kinds existed is a spill incident)."""
        seen = frozenset(k.split(":", 1)[1] for k in record if k.startswith("alert:"))
        kind = record.get("kind") or ("spill" if record else None)
        return cls(state=record.get("state"), camera_id=record.get("camera_id"), seen=seen, kind=kind)


def _camera_check(camera_id: str, known: IncidentFacts, cameras: Collection[str], kind: str) -> Check | None:
    if cameras and camera_id not in cameras:
        return Check(Verdict.REJECT, f"unknown camera {camera_id!r} (not in the configured cameras)")
    if known.camera_id is not None and known.camera_id != camera_id:
        return Check(Verdict.REJECT, f"incident belongs to camera {known.camera_id!r}, not {camera_id!r}")
    if known.kind is not None and known.kind != kind:
        return Check(Verdict.REJECT, f"incident id belongs to a {known.kind} incident, not a {kind} one")
    return None


def check_transition(
    state: AlertState | str,
    camera_id: str,
    known: IncidentFacts,
    *,
    cameras: Collection[str] = (),
) -> Check:
    """Whether an alert in ``state`` from ``camera_id`` may page, for an incident known as ``known``."""
    st = state.value if isinstance(state, AlertState) else str(state)
    bad = _camera_check(camera_id, known, cameras, "spill")
    if bad is not None:
        return bad
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


OUTAGE_OPENERS = frozenset({CameraAlertState.OFFLINE.value, CameraAlertState.STALLED.value})


def check_camera_transition(
    state: CameraAlertState | str,
    camera_id: str,
    known: IncidentFacts,
    *,
    cameras: Collection[str] = (),
) -> Check:
    """Whether a camera-outage alert in ``state`` may page, for an outage known as ``known``."""
    st = state.value if isinstance(state, CameraAlertState) else str(state)
    bad = _camera_check(camera_id, known, cameras, "camera")
    if bad is not None:
        return bad
    opened = bool(OUTAGE_OPENERS & known.seen)
    if st in OUTAGE_OPENERS:
        if opened:
            return Check(Verdict.DUPLICATE, "outage already opened")
        if known.state is not None:
            return Check(Verdict.REJECT, f"{st} after {known.state} (an outage opens with offline or stalled)")
        return Check(Verdict.PAGE)
    if st == CameraAlertState.RECOVERED.value:
        if not opened:
            return Check(Verdict.REJECT, "recovered for an outage never opened")
        if known.state == CameraAlertState.RECOVERED.value:
            return Check(Verdict.DUPLICATE, "outage already recovered")
        return Check(Verdict.PAGE)
    return Check(Verdict.REJECT, f"unknown state {st!r}")
