"""PagerDuty Events API v2-compatible events: ``trigger`` / ``resolve`` deduplicated on the incident
(a camera outage: ``trigger`` when it opens, ``resolve`` on ``recovered``, class ``camera-outage``)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from alerting.formatting import is_closing, summary
from alerting.notifiers.base import DeliveryResult, Page
from alerting.notifiers.http import make_client, post
from alerting.notifiers.links import page_links
from spillwatch.events import AlertState, CameraAlert, CameraAlertState

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


def build_event(page: Page, routing_key: str, public_base_url: str | None = None) -> dict[str, Any]:
    alert = page.alert
    if is_closing(alert):
        # A resolve needs only the routing key and the dedup key of the triggered alert.
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert.incident_id}
    links = page_links(page, public_base_url)
    if isinstance(alert, CameraAlert):
        details: dict[str, Any] = {
            "severity": "warning" if alert.state == CameraAlertState.STALLED else "error",
            "timestamp": alert.opened_at.isoformat(),
            "component": alert.camera_id,
            "class": "camera-outage",
            "custom_details": {
                "outage_id": alert.incident_id,
                "state": alert.state.value,
                "since": alert.since.isoformat(),
                "last_frame_time": alert.last_frame_time.isoformat() if alert.last_frame_time else None,
                "reason": alert.reason,
                "grace_s": alert.grace_s,
            },
        }
        link_text = "The camera in the SpillWatch console"
    else:
        ev = alert.evidence
        details = {
            "severity": "critical" if alert.state == AlertState.ESCALATED else "error",
            "timestamp": alert.confirmed_at.isoformat(),
            "component": alert.zone or alert.camera_id,
            "class": "liquid-spill",
            "custom_details": {
                "incident_id": alert.incident_id,
                "state": alert.state.value,
                "first_seen": alert.first_seen.isoformat(),
                "peak_prob": ev.peak_prob,
                "scores": ev.scores,
                "region": ev.region.model_dump() if ev.region else None,
                "snapshot": str(page.snapshot) if page.snapshot else ev.snapshot_ref,
                "model_version": alert.model_version,
            },
        }
        link_text = "Incident in the SpillWatch console (acknowledge, label)"
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.incident_id,
        "payload": {"summary": summary(alert)[:1024], "source": alert.camera_id, "group": "spillwatch", **details},
        "client": "SpillWatch",
    }
    if links.incident_url:  # no "images": the evidence is served to signed-in users only
        event["links"] = [{"href": links.incident_url, "text": link_text}]
    return event


class PagerDutyNotifier:
    def __init__(
        self,
        routing_key: str,
        *,
        url: str = DEFAULT_EVENTS_URL,
        timeout_s: float = 5.0,
        public_base_url: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = "pagerduty"
        self.url = url
        self._key = routing_key
        self._public = public_base_url
        self._client = client or make_client(timeout_s)

    def send(self, page: Page) -> DeliveryResult:
        body = json.dumps(build_event(page, self._key, self._public)).encode()
        return post(self._client, self.url, body, {})

    def close(self) -> None:
        self._client.close()
