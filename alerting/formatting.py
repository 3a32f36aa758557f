"""Human-readable renderings of an alert (console channel, ``alerts tail``, mail subjects). Pure."""

from __future__ import annotations

from datetime import datetime

from spillwatch.events import AlertState, SpillAlert

_TITLES = {
    AlertState.CONFIRMED: "SPILL CONFIRMED",
    AlertState.ESCALATED: "SPILL ESCALATED",
    AlertState.CLEARED: "spill cleared",
}


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z" if value else "-"


def title(alert: SpillAlert) -> str:
    return _TITLES.get(alert.state, alert.state.value)


def subject(alert: SpillAlert) -> str:
    where = f" zone {alert.zone}" if alert.zone else ""
    return f"[SpillWatch] {title(alert).capitalize()}: camera {alert.camera_id}{where} (incident {alert.incident_id})"


def summary(alert: SpillAlert) -> str:
    """One sentence for pages (Slack text, PagerDuty summary, mail first line)."""
    ev = alert.evidence
    where = f", zone {alert.zone}" if alert.zone else ""
    since = f"since {_t(alert.first_seen)}"
    if alert.state == AlertState.CLEARED:
        return f"Spill cleared on camera {alert.camera_id}{where} at {_t(alert.cleared_at)} (incident {alert.incident_id})"
    return (
        f"{title(alert).capitalize()} on camera {alert.camera_id}{where} {since} "
        f"(peak p={ev.peak_prob:.2f}, incident {alert.incident_id})"
    )


def one_line(alert: SpillAlert) -> str:
    """The console / ``alerts tail`` line: fixed key order, grep-friendly."""
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
