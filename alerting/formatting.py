"""Human-readable renderings of an alert (console channel, ``alerts tail``, mail subjects). Pure.

Spill incidents and camera outages (alerting/kinds.py) each have their words; every function
takes either."""

from __future__ import annotations

from datetime import datetime

from alerting.kinds import Alert
from spillwatch.events import AlertState, CameraAlert, CameraAlertState, SpillAlert

_TITLES = {
    AlertState.CONFIRMED: "SPILL CONFIRMED",
    AlertState.ESCALATED: "SPILL ESCALATED",
    AlertState.CLEARED: "spill cleared",
}
_CAMERA_TITLES = {
    CameraAlertState.OFFLINE: "CAMERA OFFLINE",
    CameraAlertState.STALLED: "CAMERA STALLED",
    CameraAlertState.RECOVERED: "camera recovered",
}


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z" if value else "-"


def down_for_s(alert: CameraAlert) -> float:
    """How long the camera was (or has been, so far) without frames, in seconds."""
    end = alert.recovered_at or alert.event_time
    return max(0.0, (end - alert.since).total_seconds())


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def title(alert: Alert) -> str:
    if isinstance(alert, CameraAlert):
        return _CAMERA_TITLES.get(alert.state, alert.state.value)
    return _TITLES.get(alert.state, alert.state.value)


def is_closing(alert: Alert) -> bool:
    """The page that ends an incident (``cleared``, ``recovered``): nothing to acknowledge."""
    return alert.state in (AlertState.CLEARED, CameraAlertState.RECOVERED)


def subject(alert: Alert) -> str:
    if isinstance(alert, CameraAlert):
        return f"[SpillWatch] {title(alert).capitalize()}: camera {alert.camera_id} (outage {alert.incident_id})"
    where = f" zone {alert.zone}" if alert.zone else ""
    return f"[SpillWatch] {title(alert).capitalize()}: camera {alert.camera_id}{where} (incident {alert.incident_id})"


def summary(alert: Alert) -> str:
    """One sentence for pages (Slack text, PagerDuty summary, mail first line)."""
    if isinstance(alert, CameraAlert):
        return camera_summary(alert)
    ev = alert.evidence
    where = f", zone {alert.zone}" if alert.zone else ""
    since = f"since {_t(alert.first_seen)}"
    if alert.state == AlertState.CLEARED:
        return f"Spill cleared on camera {alert.camera_id}{where} at {_t(alert.cleared_at)} (incident {alert.incident_id})"
    return (
        f"{title(alert).capitalize()} on camera {alert.camera_id}{where} {since} "
        f"(peak p={ev.peak_prob:.2f}, incident {alert.incident_id})"
    )


def camera_summary(alert: CameraAlert) -> str:
    if alert.state == CameraAlertState.RECOVERED:
        return (f"Camera {alert.camera_id} recovered: frames flowing since {_t(alert.recovered_at)} after "
                f"{_duration(down_for_s(alert))} without (outage {alert.incident_id})")
    why = f": {alert.reason}" if alert.reason else ""
    return (f"Camera {alert.camera_id} {alert.state.value} since {_t(alert.since)}, no spill detection there"
            f"{why} (outage {alert.incident_id})")


def one_line(alert: Alert) -> str:
    """The console / ``alerts tail`` line: fixed key order, grep-friendly."""
    if isinstance(alert, CameraAlert):
        parts = [
            f"{_t(alert.event_time)}",
            f"{title(alert):15s}",
            f"camera={alert.camera_id}",
            f"outage={alert.incident_id}",
            f"since={_t(alert.since)}",
            f"last_frame={_t(alert.last_frame_time)}",
        ]
        if alert.recovered_at:
            parts.append(f"recovered_at={_t(alert.recovered_at)}")
        parts.append(f"down_s={down_for_s(alert):.0f}")
        if alert.reason:
            parts.append(f"reason={alert.reason!r}")
        return " ".join(parts)
    return _spill_line(alert)


def _spill_line(alert: SpillAlert) -> str:
    ev = alert.evidence
    parts = [
        f"{_t(alert.event_time)}",
        f"{title(alert):15s}",
        f"camera={alert.camera_id}",
        f"incident={alert.incident_id}",
        f"peak={ev.peak_prob:.2f}",
        f"first_seen={_t(alert.first_seen)}",
        f"confirmed_at={_t(alert.confirmed_at)}",
    ]
    if alert.cleared_at:
        parts.append(f"cleared_at={_t(alert.cleared_at)}")
    if alert.zone:
        parts.append(f"zone={alert.zone}")
    if ev.region:
        r = ev.region
        parts.append(f"region=({r.x0:.2f},{r.y0:.2f})-({r.x1:.2f},{r.y1:.2f})")
    if ev.snapshot_ref:
        parts.append(f"snapshot={ev.snapshot_ref}")
    if alert.model_version:
        parts.append(f"model={alert.model_version}")
    return " ".join(parts)
