"""The console's JSON shapes (pydantic): what ``/api/*`` returns and accepts, and what the pages render."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from spillwatch.events import Region
from spillwatch.suppression import Outcome

CameraStateName = Literal["online", "stalled", "offline", "unknown"]
IncidentStatus = Literal["open", "acknowledged", "cleared"]
Verdict = Literal["spill", "clean"]


class PageView(BaseModel):
    state: str
    channel: str
    status: str = Field(description="sent or dead (dead-lettered after the last try)")
    at: datetime | None = None
    tries: int = 0
    reason: str = ""


class OutageView(BaseModel):
    """A camera outage (``camera-alerts``) with the pages alerting sent for it."""

    incident_id: str
    camera_id: str
    state: Literal["offline", "stalled"] = Field(description="how the outage opened")
    status: Literal["open", "recovered"]
    since: datetime = Field(description="when the camera stopped delivering frames")
    opened_at: datetime = Field(description="when the outage was declared (after the grace period)")
    reason: str = ""
    grace_s: float = 0.0
    last_frame_time: datetime | None = None
    recovered_at: datetime | None = Field(default=None, description="since when frames flow again")
    recovery_reason: str = ""
    paged_at: datetime | None = Field(default=None, description="first page of the outage delivered")
    recovery_paged_at: datetime | None = Field(default=None, description="first recovery notice delivered")
    pages: list[PageView] = Field(default_factory=list)


class CameraView(BaseModel):
    camera_id: str
    state: CameraStateName
    reason: str | None = Field(default=None, description="why stalled/offline, when known")
    configured_fps: float | None = Field(default=None, description="sampling rate in the configuration")
    fps: float | None = Field(default=None, description="frames per second actually delivered (camera-health)")
    last_frame_time: datetime | None = None
    last_heartbeat: datetime | None = None
    spill_prob: float | None = Field(default=None, description="probability of the newest classified frame")
    spill_prob_at: datetime | None = None
    open_incident: str | None = Field(default=None, description="newest open incident of this camera")
    thumbnail_at: datetime | None = Field(default=None, description="capture time of the thumbnail, if any")
    configured: bool = True
    outage: OutageView | None = Field(default=None, description="the camera's open outage (paged), if any")


class AckView(BaseModel):
    by: str
    at: datetime
    note: str = ""


class VerdictView(BaseModel):
    label: Verdict = Field(description="spill: a real spill; clean: a false alarm")
    by: str
    at: datetime
    suppression: Outcome | None = Field(default=None, description="what the verdict did to the camera's suppressions")


class IncidentSummary(BaseModel):
    incident_id: str
    camera_id: str
    state: str = Field(description="alert state: confirmed, escalated or cleared")
    status: IncidentStatus
    escalated: bool = False
    first_seen: datetime
    confirmed_at: datetime
    cleared_at: datetime | None = None
    paged_at: datetime | None = Field(default=None, description="first confirmed page delivered")
    peak_prob: float = 0.0
    model_version: str = ""
    zone: str | None = None
    ack: AckView | None = None
    verdict: VerdictView | None = None
    has_snapshot: bool = False


class TimelinePoint(BaseModel):
    seq: int
    t: datetime
    p: float


class IncidentDetail(IncidentSummary):
    region: Region | None = None
    scores: list[float] = Field(default_factory=list, description="the window that confirmed it")
    frame_seqs: list[int] = Field(default_factory=list)
    confirming_seq: int | None = None
    spill_map: list[list[int]] | None = Field(default=None, description="coarse map of the confirming frame (0..255)")
    timeline: list[TimelinePoint] = Field(default_factory=list, description="scores around the confirmation")
    pages: list[PageView] = Field(default_factory=list)
    escalations: list[PageView] = Field(default_factory=list)
    alert_states: list[str] = Field(default_factory=list)
    suppression: Outcome | None = Field(default=None, description="what the verdict did to the camera's suppressions")


class IncidentPage(BaseModel):
    items: list[IncidentSummary]
    page: int
    per_page: int
    has_more: bool


class AckBody(BaseModel):
    """``POST /api/incidents/{id}/ack``: the acknowledging user is the caller (session or token)."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=2000)


class LabelBody(BaseModel):
    """``POST /api/incidents/{id}/label``: the operator's verdict, written to the archive like
    ``spillwatch label --true|--false``; acknowledges the incident too if nobody has."""

    model_config = ConfigDict(extra="forbid")

    label: Verdict
    note: str = Field(default="", max_length=2000)


class Me(BaseModel):
    name: str
    role: str
    kind: str


class SuppressionView(BaseModel):
    """A learned false alarm of one camera (docs/suppression.md)."""

    id: str
    camera_id: str
    incident_id: str = Field(description="the false alarm it was learned from")
    by: str
    source: str
    created_at: datetime
    expires_at: datetime
    confirmed_at: datetime | None = Field(default=None, description="last renewal by a later false alarm on its cells")
    confirmed_by: list[str] = Field(default_factory=list)
    cells: list[int] = Field(description="spill-map cells (row-major) it suppresses when they look as learned")
    grid: list[int]
    area: float = Field(description="share of the frame its cells cover")
    frames: int
    model_version: str = ""
    forced: bool = False
    warning: str | None = None
    fired: int = Field(description="frames it suppressed since it was made")
    last_fired: datetime | None = None
    expired: bool = False


class SuppressBody(BaseModel):
    """``POST /api/incidents/{id}/suppress``: learn a suppression from a false alarm again, e.g.
    after the area cap refused it (``force``: admins only)."""

    model_config = ConfigDict(extra="forbid")

    force: bool = False
