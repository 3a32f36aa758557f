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


def build_payload(page: Page, public_base_url: str | None = None) -> dict[str, Any]:
    if isinstance(page.alert, CameraAlert):
        return _camera_payload(page, page.alert, public_base_url)
    alert = page.alert
    ev = alert.evidence
    links = page_links(page, public_base_url)
    text = f"{_EMOJI.get(alert.state, '')} {summary(alert)}".strip()
    fields = [
        {"type": "mrkdwn", "text": f"*Camera*\n{alert.camera_id}"},
        {"type": "mrkdwn", "text": f"*Incident*\n{alert.incident_id}"},
        {"type": "mrkdwn", "text": f"*First seen*\n{_ts(alert.first_seen)}"},
        {"type": "mrkdwn", "text": f"*Confirmed*\n{_ts(alert.confirmed_at)}"},
        {"type": "mrkdwn", "text": f"*Peak probability*\n{ev.peak_prob:.2f}"},
        {"type": "mrkdwn", "text": f"*Zone*\n{alert.zone or '-'}"},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{title(alert)}: {alert.camera_id}"[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text}, "fields": fields},
    ]
    # no image block: the evidence is served to signed-in users only, Slack could not fetch it
    context = [f"model {alert.model_version or '-'}", f"key `{page.idempotency_key}`"]
    if links.incident_url:
        context.append(f"<{links.incident_url}|open the incident>" + (" to acknowledge" if alert.state != AlertState.CLEARED else ""))
    if alert.state != AlertState.CLEARED:
        context.append(f"acknowledge: `spillwatch ack {alert.incident_id}`")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    return {"text": text, "blocks": blocks}


def _camera_payload(page: Page, alert: CameraAlert, public_base_url: str | None) -> dict[str, Any]:
    links = page_links(page, public_base_url)
    text = f"{_EMOJI.get(alert.state, '')} {summary(alert)}".strip()
    fields = [
        {"type": "mrkdwn", "text": f"*Camera*\n{alert.camera_id}"},
        {"type": "mrkdwn", "text": f"*Outage*\n{alert.incident_id}"},
        {"type": "mrkdwn", "text": f"*Without frames since*\n{_ts(alert.since)}"},
        {"type": "mrkdwn", "text": f"*Last frame*\n{_ts(alert.last_frame_time)}"},
    ]
    if alert.recovered_at is not None:
        fields.append({"type": "mrkdwn", "text": f"*Frames again since*\n{_ts(alert.recovered_at)}"})
        fields.append({"type": "mrkdwn", "text": f"*Down for*\n{down_for_s(alert):.0f} s"})
    elif alert.reason:
        fields.append({"type": "mrkdwn", "text": f"*Reason*\n{alert.reason[:300]}"})
    context = [f"grace period {alert.grace_s:.0f} s", f"key `{page.idempotency_key}`"]
    if links.incident_url:
        context.append(f"<{links.incident_url}|the camera in the SpillWatch console>")
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
