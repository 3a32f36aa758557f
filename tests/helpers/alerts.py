"""Spill alerts and a running alerting service for alerting tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from alerting.service import AlertingService
from spillwatch.events import AlertState, CameraAlert, CameraAlertState, Evidence, Region, SpillAlert
from spillwatch.settings import AlertingSettings, Settings
from tests.helpers.waiting import wait_until

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


def make_camera_alert(state: CameraAlertState = CameraAlertState.OFFLINE, incident: str = "outage-dock-1-1",
                      camera: str = "dock-1") -> CameraAlert:
    """A camera outage of ``camera``: frames stopped at ALERT_T0, paged 60 s later (recovered 5 min
    after it began)."""
    recovered = state == CameraAlertState.RECOVERED
    return CameraAlert(
        incident_id=incident,
        camera_id=camera,
        state=state,
        since=ALERT_T0,
        opened_at=ALERT_T0 + timedelta(seconds=60),
        recovered_at=ALERT_T0 + timedelta(minutes=5) if recovered else None,
        last_frame_time=ALERT_T0 - timedelta(seconds=1),
        reason="frames flowing again" if recovered else "offline: rtsp timeout",
        grace_s=60,
        event_time=ALERT_T0 + timedelta(minutes=5 if recovered else 1),
    )


SECRET = "it-secret"


def configure(settings: Settings, **alerting: Any) -> Settings:
    base = {"backoff_initial_s": 0.2, "backoff_max_s": 1.0, "request_timeout_s": 2.0}
    return settings.model_copy(update={"alerting": AlertingSettings(**(base | alerting))})


def publish(settings: Settings, *values: bytes, key: bytes = b"dock-1", topic: str | None = None) -> None:
    """Records onto ``spill-alerts`` (or ``topic``)."""
    from spillwatch.kafka import make_producer

    p = make_producer(settings)
    try:
        for v in values:
            p.send(topic or settings.topics.spill_alerts, key=key, value=v)
        p.flush(10)
    finally:
        p.close(5)


@contextmanager
def running(settings: Settings) -> Iterator[AlertingService]:
    svc = AlertingService(settings).start()
    try:
        yield svc
    finally:
        svc.stop()


def page_status(svc: AlertingService, incident: str, key: str) -> str | None:
    return (svc.store.incident_pages(incident).get(key) or {}).get("status")


def settled_service(svc: Any, s: Settings, timeout_s: float = 30.0) -> None:
    """Positive signal: the service committed every alert published so far (each one was queued or
    dead-lettered before its offset was committed) and its page queue is empty."""
    from spillwatch.kafka import group_lag

    group = s.kafka.topic_prefix + s.alerting.group_id
    wait_until(lambda: group_lag(s, group, s.topics.spill_alerts) == 0, timeout_s, 0.3)
    wait_until(lambda: svc.store.r.zcard(svc.store.queue_key) == 0 and svc.store.r.hlen(svc.store.jobs_key) == 0, timeout_s)
