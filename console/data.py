"""Reads and writes behind every page and API call: the incident index joined with alerting's Redis
state (pages), the acknowledgements (spillwatch/acks.py) and the camera board; acknowledging and
labelling.

Labels go into the archive exactly as ``spillwatch label`` writes them: one ``LabelRecord`` line
(spillwatch/archive.py ``append_label``, source ``console``, ``by`` the signed-in user) that frames of
the incident inherit at read time. The verdict is also kept in the index, for the pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.auth import Principal
from console.cameras import CameraBoard, effective_state, stale_after_s
from console.incidents import IncidentIndex, IncidentRecord
from console.models import (
    AckView,
    CameraView,
    IncidentDetail,
    IncidentPage,
    IncidentSummary,
    OutageView,
    PageView,
    SuppressionView,
    TimelinePoint,
    VerdictView,
)
from console.outages import OutageBoard, OutageRecord
from spillwatch.acks import Ack, AckRequest, AckStore
from spillwatch.archive import LabelRecord, append_label
from spillwatch.events import utcnow
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import Settings
from spillwatch.snapshots import resolve_snapshot
from spillwatch.suppression import Outcome
from spillwatch.suppression_store import SuppressionStore

STATUSES = ("open", "acknowledged", "unacknowledged", "cleared")


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Filters:
    camera: str | None = None
    status: str | None = None  # one of STATUSES
    since: datetime | None = None
    until: datetime | None = None


def _dt(v: Any) -> datetime | None:
    if not v:
        return None
    try:
        return datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        return None


def status_of(rec: IncidentRecord, ack: Ack | None) -> str:
    if not rec.open:
        return "cleared"
    return "acknowledged" if ack is not None else "open"


def matches(status: str, wanted: str | None) -> bool:
    """Whether an incident of ``status`` passes the status filter. Pure."""
    if not wanted:
        return True
    if wanted == "unacknowledged":
        return status == "open"
    if wanted == "open":
        return status in ("open", "acknowledged")
    return status == wanted


def who(p: Principal) -> str:
    return p.name if p.kind == "session" else f"token:{p.name}"


class ConsoleData:
    def __init__(self, settings: Settings, redis: Any, index: IncidentIndex, board: CameraBoard,
                 outages: OutageBoard | None = None) -> None:
        self.settings = settings
        self.r = redis
        self.index = index
        self.board = board
        self.outage_board = outages if outages is not None else OutageBoard()
        self.keys = RedisKeys(settings.redis.key_prefix)
        self.acks = AckStore(redis, settings.redis.key_prefix, settings.alerting.ack_ttl_s)
        self.suppressions = SuppressionStore(redis, settings.redis.key_prefix, settings.suppression)
        self.stale_after_s = stale_after_s(settings.producer.offline_after_s, settings.producer.heartbeat_s)

    # ------------------------------------------------------------------ cameras
    def cameras(self, now: datetime | None = None) -> list[CameraView]:
        now = now or utcnow()
        configured = {c.id: c for c in self.settings.cameras}
        open_by_cam: dict[str, str] = {}
        for rec in self.index.get_many(self.index.open_ids()[:500]):
            open_by_cam.setdefault(rec.camera_id, rec.incident_id)
        out = []
        for cam in sorted(set(configured) | set(self.board.cameras())):
            h = self.board.health(cam)
            state, reason = effective_state(h, now, self.stale_after_s)
            latest = self.board.latest(cam)
            thumb = self.board.thumbnail(cam)
            cfg = configured.get(cam)
            out.append(CameraView(
                camera_id=cam,
                state=state,  # type: ignore[arg-type]
                reason=reason,
                configured_fps=cfg.fps if cfg else None,
                fps=round(h.fps, 2) if h else None,
                last_frame_time=h.last_frame_time if h else None,
                last_heartbeat=h.at if h else None,
                spill_prob=round(latest.p, 4) if latest else None,
                spill_prob_at=datetime.fromtimestamp(latest.t, UTC) if latest else None,
                open_incident=open_by_cam.get(cam),
                thumbnail_at=thumb[1] if thumb else None,
                configured=cfg is not None,
                outage=self._outage_view(outage) if (outage := self.outage_board.open_for(cam)) else None,
            ))
        return out

    # ------------------------------------------------------------------ camera outages
    def outages(self, limit: int = 50) -> list[OutageView]:
        """Open outages first, then the recovered ones; newest first; with their pages."""
        return [self._outage_view(r) for r in self.outage_board.recent(limit)]

    def _outage_view(self, rec: OutageRecord) -> OutageView:
        pages = self._pages(rec.incident_id)

        def first_sent(states: tuple[str, ...]) -> datetime | None:
            sent = [p.at for p in pages if p.state in states and p.status == "sent" and p.at]
            return min(sent) if sent else None

        return OutageView(
            incident_id=rec.incident_id,
            camera_id=rec.camera_id,
            state=rec.state,  # type: ignore[arg-type]
            status="open" if rec.open else "recovered",
            since=rec.since,
            opened_at=rec.opened_at,
            reason=rec.reason,
            grace_s=rec.grace_s,
            last_frame_time=rec.last_frame_time,
            recovered_at=rec.recovered_at,
            recovery_reason=rec.recovery_reason,
            paged_at=first_sent(("offline", "stalled")),
            recovery_paged_at=first_sent(("recovered",)),
            pages=pages,
        )

    # ------------------------------------------------------------------ incidents
    def _acks(self, ids: list[str]) -> dict[str, Ack]:
        out = {}
        for i in ids:
            a = self.acks.get(i)
            if a is not None:
                out[i] = a
        return out

    def _pages(self, incident_id: str) -> list[PageView]:
        raw = self.r.hgetall(self.keys.alerting_incident_pages(incident_id))
        pages = []
        for v in raw.values():
            try:
                d = json.loads(v)
            except (TypeError, ValueError):
                continue
            pages.append(PageView(
                state=str(d.get("state", "")),
                channel=str(d.get("channel", "")),
                status=str(d.get("status", "")),
                at=_dt(d.get("at")),
                tries=int(d.get("tries") or 0),
                reason=str(d.get("reason") or "")[:500],
            ))
        pages.sort(key=lambda p: (p.at or datetime.min.replace(tzinfo=UTC), p.channel))
        return pages

    def _summary(self, rec: IncidentRecord, ack: Ack | None, pages: list[PageView] | None = None) -> dict[str, Any]:
        pages = self._pages(rec.incident_id) if pages is None else pages
        paged = [p.at for p in pages if p.state == "confirmed" and p.status == "sent" and p.at]
        ev = rec.evidence
        return {
            "incident_id": rec.incident_id,
            "camera_id": rec.camera_id,
            "state": rec.state,
            "status": status_of(rec, ack),
            "escalated": rec.escalated,
            "first_seen": rec.first_seen,
            "confirmed_at": rec.confirmed_at,
            "cleared_at": rec.cleared_at,
            "paged_at": min(paged) if paged else None,
            "peak_prob": ev.peak_prob,
            "model_version": rec.model_version,
            "zone": rec.zone,
            "ack": AckView(by=ack.by, at=ack.at, note=ack.note) if ack else None,
            "verdict": VerdictView(label=rec.verdict, by=rec.verdict_by or "", at=rec.verdict_at)  # type: ignore[arg-type]
            if rec.verdict and rec.verdict_at
            else None,
            "has_snapshot": self.snapshot_path(rec) is not None,
        }

    def incidents(self, f: Filters, page: int = 1, per_page: int = 25) -> IncidentPage:
        """Open incidents first, then history; newest first in each; filtered and paged."""
        ids = self.index.ordered_ids(f.camera, f.since, f.until)
        skip, want = (page - 1) * per_page, per_page + 1
        items: list[IncidentSummary] = []
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            recs = self.index.get_many(chunk)
            acks = self._acks([r.incident_id for r in recs])
            for rec in recs:
                if f.camera and rec.camera_id != f.camera:
                    continue
                ack = acks.get(rec.incident_id)
                if not matches(status_of(rec, ack), f.status):
                    continue
                if skip:
                    skip -= 1
                    continue
                items.append(IncidentSummary(**self._summary(rec, ack)))
                if len(items) >= want:
                    break
            if len(items) >= want:
                break
        return IncidentPage(items=items[:per_page], page=page, per_page=per_page, has_more=len(items) > per_page)

    def incident(self, incident_id: str) -> IncidentDetail:
        rec = self.index.get(incident_id)
        if rec is None:
            raise NotFound(incident_id)
        pages = self._pages(incident_id)
        ev = rec.evidence
        timeline = [TimelinePoint(seq=s, t=datetime.fromtimestamp(t, UTC), p=p) for s, t, p in self.index.timeline(incident_id)]
        return IncidentDetail(
            **self._summary(rec, self.acks.get(incident_id), pages),
            region=ev.region,
            scores=list(ev.scores),
            frame_seqs=list(ev.frame_seqs),
            confirming_seq=ev.confirming_seq,
            spill_map=rec.spill_map,
            timeline=timeline,
            pages=[p for p in pages if p.state != "escalated"],
            escalations=[p for p in pages if p.state == "escalated"],
            alert_states=sorted(rec.alerts, key=["confirmed", "escalated", "cleared"].index),
            suppression=self.suppressions.outcome(incident_id),
        )

    def snapshot_path(self, rec: IncidentRecord | str) -> Path | None:
        if isinstance(rec, str):
            found = self.index.get(rec)
            if found is None:
                return None
            rec = found
        for state in ("confirmed", "escalated", "cleared"):
            alert = rec.alerts.get(state)
            if alert is not None:
                path = resolve_snapshot(alert.evidence.snapshot_ref, self.settings.alerting.evidence_dir)
                if path is not None:
                    return path
        return None

    # ------------------------------------------------------------------ actions
    def acknowledge(self, incident_id: str, by: Principal, note: str = "") -> Ack:
        """Acknowledge (the ack hash alerting and the aggregator read: escalation stops)."""
        if self.index.get(incident_id) is None:
            raise NotFound(incident_id)
        return self.acks.ack(incident_id, AckRequest(by=who(by), note=note))

    def label(self, incident_id: str, label: str, by: Principal, note: str = "") -> VerdictView:
        """The verdict into the archive (as ``spillwatch label`` writes it) and the index; an
        unacknowledged incident is acknowledged with it; a false alarm teaches its camera at once
        (a suppression, docs/suppression.md), a real spill never does."""
        if self.index.get(incident_id) is None:
            raise NotFound(incident_id)
        at = utcnow()
        append_label(self.settings.archive.root, LabelRecord(label=label, incident_id=incident_id, source="console", by=who(by), at=at))  # type: ignore[arg-type]
        self.index.set_verdict(incident_id, label, who(by), at)
        if not self.acks.is_acked(incident_id):
            verdict = "spill confirmed" if label == "spill" else "false alarm"
            self.acks.ack(incident_id, AckRequest(by=who(by), note=note or verdict), at=at)
        outcome = self.suppressions.apply_verdict(incident_id, label == "spill", by=who(by), source="console", now=at)
        return VerdictView(label=label, by=who(by), at=at, suppression=outcome)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ suppressions
    def suppression_list(self, camera: str | None = None) -> list[SuppressionView]:
        return [SuppressionView(**i.as_dict()) for i in self.suppressions.listing(camera)]

    def remove_suppression(self, entry_id: str) -> SuppressionView:
        found = [i for i in self.suppressions.listing() if i.entry.id == entry_id]
        if not found or self.suppressions.remove(entry_id) is None:
            raise NotFound(entry_id)
        return SuppressionView(**found[0].as_dict())

    def suppress(self, incident_id: str, by: Principal, force: bool = False) -> Outcome:
        """Learn from a false alarm again (e.g. ``force`` after the area cap refused it)."""
        if self.index.get(incident_id) is None:
            raise NotFound(incident_id)
        return self.suppressions.learn(incident_id, by=who(by), source="console", force=force)
