"""Slack-compatible incoming-webhook payload (``text`` fallback + Block Kit ``blocks``); spill
incidents and camera outages."""

from __future__ import annotations

import json
from typing import Any

import httpx

from alerting.formatting import down_for_s, summary, title
from alerting.notifiers.base import DeliveryResult, Page
from alerting.notifiers.http import make_client, post
from alerting.notifiers.links import page_links
from spillwatch.events import AlertState, CameraAlert, CameraAlertState

_EMOJI = {
    AlertState.CONFIRMED: ":warning:", AlertState.ESCALATED: ":rotating_light:", AlertState.CLEARED: ":white_check_mark:",
    CameraAlertState.OFFLINE: ":no_entry:", CameraAlertState.STALLED: ":hourglass:", CameraAlertState.RECOVERED: ":white_check_mark:",
}


def _ts(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _field(name: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{name}*\n{value}"}


def build_payload(page: Page, public_base_url: str | None = None) -> dict[str, Any]:
    alert = page.alert
    links = page_links(page, public_base_url)
    text = f"{_EMOJI.get(alert.state, '')} {summary(alert)}".strip()
    if isinstance(alert, CameraAlert):
        fields = [_field("Camera", alert.camera_id), _field("Outage", alert.incident_id),
                  _field("Without frames since", _ts(alert.since)), _field("Last frame", _ts(alert.last_frame_time))]
        if alert.recovered_at is not None:
            fields += [_field("Frames again since", _ts(alert.recovered_at)), _field("Down for", f"{down_for_s(alert):.0f} s")]
        elif alert.reason:
            fields.append(_field("Reason", alert.reason[:300]))
        context = [f"grace period {alert.grace_s:.0f} s", f"key `{page.idempotency_key}`"]
        if links.incident_url:
            context.append(f"<{links.incident_url}|the camera in the SpillWatch console>")
    else:
        ev = alert.evidence
        fields = [_field("Camera", alert.camera_id), _field("Incident", alert.incident_id),
                  _field("First seen", _ts(alert.first_seen)), _field("Confirmed", _ts(alert.confirmed_at)),
                  _field("Peak probability", f"{ev.peak_prob:.2f}"), _field("Zone", alert.zone or "-")]
        # no image block: the evidence is served to signed-in users only, Slack could not fetch it
        context = [f"model {alert.model_version or '-'}", f"key `{page.idempotency_key}`"]
        if links.incident_url:
            context.append(f"<{links.incident_url}|open the incident>" + (" to acknowledge" if alert.state != AlertState.CLEARED else ""))
        if alert.state != AlertState.CLEARED:
            context.append(f"acknowledge: `spillwatch ack {alert.incident_id}`")
    return {"text": text, "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": f"{title(alert)}: {alert.camera_id}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text}, "fields": fields},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
    ]}


class SlackNotifier:
    def __init__(
        self, url: str, *, timeout_s: float = 5.0, public_base_url: str | None = None, client: httpx.Client | None = None
    ) -> None:
        self.name = "slack"
        self.url = url
        self._public = public_base_url
        self._client = client or make_client(timeout_s)

    def send(self, page: Page) -> DeliveryResult:
        body = json.dumps(build_payload(page, self._public)).encode()
        return post(self._client, self.url, body, {})

    def close(self) -> None:
        self._client.close()
