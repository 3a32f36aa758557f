"""Links a page carries (acknowledge, evidence snapshot) when the ack API has a public URL. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from alerting.notifiers.base import Page


@dataclass(frozen=True)
class Links:
    ack_url: str | None = None
    incident_url: str | None = None
    snapshot_url: str | None = None


def page_links(page: Page, public_base_url: str | None) -> Links:
    if not public_base_url:
        return Links()
    base = public_base_url.rstrip("/") + "/incidents/" + quote(page.alert.incident_id, safe="")
    return Links(
        ack_url=base + "/ack",
        incident_url=base,
        snapshot_url=base + "/snapshot" if page.snapshot is not None else None,
    )
