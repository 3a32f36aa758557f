"""Links a page carries, when ``alerting.public_base_url`` (the console's public URL) is set. Pure.

* ``incident_url``: the console's incident page (sign-in required; its buttons acknowledge and
  label). This is the link people follow from Slack, e-mail, PagerDuty.
* ``ack_url``: the console's machine endpoint ``POST /api/incidents/<id>/ack`` (an API token in
  ``Authorization: Bearer``); in the webhook payload for scripts.
* ``snapshot_url``: ``GET /api/incidents/<id>/snapshot`` (signed-in users and tokens only, so chat
  tools that fetch images anonymously get nothing: Slack and PagerDuty link the page instead).

A camera outage links the console's cameras page at that camera (``/cameras#camera-<id>``: its
state, the outage and the pages sent); there is nothing to acknowledge.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from alerting.notifiers.base import Page
from spillwatch.events import CameraAlert


@dataclass(frozen=True)
class Links:
    incident_url: str | None = None
    ack_url: str | None = None
    snapshot_url: str | None = None


def page_links(page: Page, public_base_url: str | None) -> Links:
    if not public_base_url:
        return Links()
    root = public_base_url.rstrip("/")
    if isinstance(page.alert, CameraAlert):
        return Links(incident_url=f"{root}/cameras#camera-{quote(page.alert.camera_id, safe='')}")
    inc = quote(page.alert.incident_id, safe="")
    return Links(
        incident_url=f"{root}/incidents/{inc}",
        ack_url=f"{root}/api/incidents/{inc}/ack",
        snapshot_url=f"{root}/api/incidents/{inc}/snapshot" if page.snapshot is not None else None,
    )
