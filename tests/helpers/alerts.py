"""Spill alerts for alerting tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spillwatch.events import AlertState, Evidence, Region, SpillAlert

ALERT_T0 = datetime(2026, 11, 29, 1, 0, 0, tzinfo=UTC)  # first_seen of every ``make_alert``


def make_alert(state: AlertState = AlertState.CONFIRMED, snapshot: str | None = None, incident: str = "inc-42") -> SpillAlert:
    """An alert of camera ``dock-1``: first seen at ALERT_T0, confirmed 2 s later (cleared 5 min
    after), peak probability 0.95, a region and an optional evidence snapshot reference."""
    return SpillAlert(
        incident_id=incident,
        camera_id="dock-1",
        state=state,
        first_seen=ALERT_T0,
        confirmed_at=ALERT_T0 + timedelta(seconds=2),
        cleared_at=ALERT_T0 + timedelta(minutes=5) if state == AlertState.CLEARED else None,
        evidence=Evidence(
            scores=[0.7, 0.9, 0.95], frame_seqs=[10, 11, 12], peak_prob=0.95, confirming_seq=12,
            region=Region(x0=0.1, y0=0.5, x1=0.4, y1=0.9, area=0.08), snapshot_ref=snapshot,
        ),
        model_version="effl0-v3",
        zone="aisle-3",
    )
