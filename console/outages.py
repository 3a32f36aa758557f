"""Camera outages as the console knows them, built from the ``camera-alerts`` topic.

The console reads the whole topic from the beginning at start (a few records per outage) into this
in-memory board, so every console instance agrees without a shared index; the pages sent for an
outage stay where alerting keeps them and are joined at read time (console/data.py). The board
keeps the newest ``max_records`` outages (older, closed ones are dropped first).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from spillwatch.events import CameraAlert, CameraAlertState

Change = Literal["opened", "recovered"]


@dataclass(frozen=True)
class OutageRecord:
    incident_id: str
    camera_id: str
    state: str  # how it opened: offline or stalled
    since: datetime
    opened_at: datetime
    reason: str = ""
    grace_s: float = 0.0
    last_frame_time: datetime | None = None
    recovered_at: datetime | None = None
    recovery_reason: str = ""

    @property
    def open(self) -> bool:
        return self.recovered_at is None


def merge_outage(cur: OutageRecord | None, alert: CameraAlert) -> tuple[OutageRecord | None, Change | None]:
    """The record after ``alert`` and what changed (None: nothing, e.g. a redelivery). Pure.
    A ``recovered`` seen without its opening alert (retention) still records the outage."""
    if alert.state == CameraAlertState.RECOVERED:
        if cur is not None and not cur.open:
            return cur, None
        base = cur or OutageRecord(
            incident_id=alert.incident_id, camera_id=alert.camera_id, state=CameraAlertState.OFFLINE.value,
            since=alert.since, opened_at=alert.opened_at, grace_s=alert.grace_s,
        )
        return replace(base, recovered_at=alert.recovered_at, recovery_reason=alert.reason,
                       last_frame_time=alert.last_frame_time or base.last_frame_time), "recovered"
    if cur is not None:
        return cur, None  # an outage opens once (offline or stalled)
    return OutageRecord(
        incident_id=alert.incident_id, camera_id=alert.camera_id, state=alert.state.value, since=alert.since,
        opened_at=alert.opened_at, reason=alert.reason, grace_s=alert.grace_s, last_frame_time=alert.last_frame_time,
    ), "opened"


class OutageBoard:
    def __init__(self, max_records: int = 2000) -> None:
        self.max_records = max_records
        self._lock = threading.Lock()
        self._records: dict[str, OutageRecord] = {}

    def ingest(self, alert: CameraAlert) -> Change | None:
        with self._lock:
            cur = self._records.get(alert.incident_id)
            if cur is not None and cur.camera_id != alert.camera_id:
                return None  # another camera's outage id: alerting dead-letters it too
            rec, change = merge_outage(cur, alert)
            if change is None or rec is None:
                return None
            self._records[rec.incident_id] = rec
            self._trim()
            return change

    def _trim(self) -> None:
        extra = len(self._records) - self.max_records
        if extra <= 0:
            return
        closed = sorted((r for r in self._records.values() if not r.open), key=lambda r: r.since)
        for r in (closed + sorted((r for r in self._records.values() if r.open), key=lambda r: r.since))[:extra]:
            del self._records[r.incident_id]

    def get(self, incident_id: str) -> OutageRecord | None:
        with self._lock:
            return self._records.get(incident_id)

    def open_for(self, camera: str) -> OutageRecord | None:
        """The camera's newest open outage."""
        with self._lock:
            found = [r for r in self._records.values() if r.camera_id == camera and r.open]
        return max(found, key=lambda r: r.since) if found else None

    def recent(self, limit: int = 50) -> list[OutageRecord]:
        """Open outages first, then closed ones; newest first in each."""
        with self._lock:
            recs = list(self._records.values())
        recs.sort(key=lambda r: (not r.open, -r.since.timestamp()))
        return recs[:limit]
