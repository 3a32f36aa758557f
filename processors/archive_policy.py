"""What the archiver keeps, and what retention deletes. Pure decisions: no Kafka, no files.

* ``JoinBuffer`` pairs a frame with its classification by (camera, seq), whichever comes first,
  bounded in size and age (a frame whose classification never comes — dead-lettered — expires).
* ``ArchivePolicy`` decides per classified frame: keep every frame inside an incident window
  (``before_s`` before the first suspicious frame .. ``after_s`` after clearing; a per-camera ring
  buffer holds the "before" frames until the alert arrives), every frame scoring ``>= low_score``,
  and 1 in ``sample_every`` ordinary frames (by sequence number, so redelivery decides the same).
* ``plan_retention`` picks the files to delete for the age and size limits.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

F = TypeVar("F")
C = TypeVar("C")


# --------------------------------------------------------------------------- join


class JoinBuffer(Generic[F, C]):
    """Pairs frames and classifications by key; each side bounded by ``max_items`` and ``ttl_s``.

    ``now`` is a monotonic clock reading supplied by the caller (tests pass their own).
    """

    def __init__(self, max_items: int = 4096, ttl_s: float = 120.0) -> None:
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._frames: OrderedDict[Hashable, tuple[float, F]] = OrderedDict()
        self._cls: OrderedDict[Hashable, tuple[float, C]] = OrderedDict()
        self.expired_frames = 0
        self.expired_classifications = 0

    def add_frame(self, key: Hashable, frame: F, now: float) -> tuple[F, C] | None:
        hit = self._cls.pop(key, None)
        if hit is not None:
            return frame, hit[1]
        self._frames[key] = (now, frame)
        self._frames.move_to_end(key)
        self._bound(now)
        return None

    def add_classification(self, key: Hashable, cls: C, now: float) -> tuple[F, C] | None:
        hit = self._frames.pop(key, None)
        if hit is not None:
            return hit[1], cls
        self._cls[key] = (now, cls)
        self._cls.move_to_end(key)
        self._bound(now)
        return None

    def _bound(self, now: float) -> None:
        for store, attr in ((self._frames, "expired_frames"), (self._cls, "expired_classifications")):
            while store and (len(store) > self.max_items or next(iter(store.values()))[0] < now - self.ttl_s):
                store.popitem(last=False)
                setattr(self, attr, getattr(self, attr) + 1)

    def expire(self, now: float) -> None:
        self._bound(now)

    def __len__(self) -> int:
        return len(self._frames) + len(self._cls)

    @property
    def pending_frames(self) -> int:
        return len(self._frames)


# --------------------------------------------------------------------------- archive decisions


@dataclass
class Item:
    """A classified frame as the policy sees it. ``payload`` is opaque (the JPEG bytes)."""

    camera: str
    seq: int
    capture_time: datetime
    score: float
    model_version: str = ""
    label: str | None = None
    payload: Any = None
    # set by the policy when it decides to store the frame
    stored: bool = False
    incident_id: str | None = None
    file: str | None = None  # set by the store once written
    suppressed_by: list[str] | None = None  # learned false alarms that suppressed cells of this frame


@dataclass(frozen=True)
class Decision:
    """Store ``item`` (or, when it is already stored, record its incident) with ``reason``."""

    item: Item
    reason: str  # "incident" | "low_score" | "sample"
    incident_id: str | None
    already_stored: bool


@dataclass
class IncidentWindow:
    incident_id: str
    start: datetime  # first_seen - before_s
    end: datetime  # cleared_at + after_s, or confirmed_at + incident_max_s while open
    cleared: bool = False

    def contains(self, t: datetime) -> bool:
        return self.start <= t <= self.end


@dataclass
class PolicyConfig:
    low_score: float = 0.2
    sample_every: int = 50
    before_s: float = 30.0
    after_s: float = 30.0
    incident_max_s: float = 1800.0
    ring_max_frames: int = 240
    # The ring keeps before_s + ring_slack_s: the alert names first_seen only after confirmation
    # (k-of-n frames later) plus the aggregator's latency.
    ring_slack_s: float = 30.0

    @classmethod
    def from_settings(cls, a: Any) -> PolicyConfig:
        return cls(
            low_score=a.low_score,
            sample_every=a.sample_every,
            before_s=a.incident_before_s,
            after_s=a.incident_after_s,
            incident_max_s=a.incident_max_s,
            ring_max_frames=a.ring_max_frames,
            ring_slack_s=a.ring_slack_s,
        )


@dataclass
class _CameraState:
    ring: deque[Item] = field(default_factory=deque)
    windows: list[IncidentWindow] = field(default_factory=list)
    latest: datetime | None = None


class ArchivePolicy:
    """Per-camera ring buffer + incident windows + sampling. Feed it classified frames and alerts."""

    def __init__(self, cfg: PolicyConfig) -> None:
        self.cfg = cfg
        self._cams: dict[str, _CameraState] = {}

    def _cam(self, camera: str) -> _CameraState:
        st = self._cams.get(camera)
        if st is None:
            st = self._cams[camera] = _CameraState()
        return st

    def base_reason(self, item: Item) -> str | None:
        """Reason to keep a frame outside any incident, or None."""
        if item.score >= self.cfg.low_score:
            return "low_score"
        if item.seq % self.cfg.sample_every == 0:
            return "sample"
        return None

    def on_frame(self, item: Item) -> list[Decision]:
        st = self._cam(item.camera)
        win = next((w for w in st.windows if w.contains(item.capture_time)), None)
        out: list[Decision] = []
        if win is not None:
            out.append(self._decide(item, "incident", win.incident_id))
        else:
            reason = self.base_reason(item)
            if reason is not None:
                out.append(self._decide(item, reason, None))
        st.ring.append(item)
        if st.latest is None or item.capture_time > st.latest:
            st.latest = item.capture_time
        self._prune(st)
        return out

    def on_alert(
        self,
        *,
        incident_id: str,
        camera: str,
        state: str,
        first_seen: datetime,
        confirmed_at: datetime,
        cleared_at: datetime | None = None,
    ) -> list[Decision]:
        """An alert state (confirmed/escalated/cleared): open or extend the incident window and
        return the buffered frames that fall inside it."""
        st = self._cam(camera)
        c = self.cfg
        win = next((w for w in st.windows if w.incident_id == incident_id), None)
        start = first_seen - timedelta(seconds=c.before_s)
        if state == "cleared" and cleared_at is not None:
            end = cleared_at + timedelta(seconds=c.after_s)
        else:
            end = confirmed_at + timedelta(seconds=c.incident_max_s)
        if win is None:
            win = IncidentWindow(incident_id, start, end, cleared=state == "cleared")
            st.windows.append(win)
        else:
            win.start = min(win.start, start)
            if state == "cleared" and cleared_at is not None:
                win.end, win.cleared = end, True
            elif not win.cleared:
                win.end = max(win.end, end)
        out: list[Decision] = []
        for item in st.ring:
            if win.contains(item.capture_time) and item.incident_id is None:
                out.append(self._decide(item, "incident", incident_id))
        self._prune(st)
        return out

    def _decide(self, item: Item, reason: str, incident_id: str | None) -> Decision:
        d = Decision(item=item, reason=reason, incident_id=incident_id, already_stored=item.stored)
        item.stored = True
        if incident_id is not None:
            item.incident_id = incident_id
        return d

    def _prune(self, st: _CameraState) -> None:
        if st.latest is None:
            return
        horizon = st.latest - timedelta(seconds=self.cfg.before_s + self.cfg.ring_slack_s)
        while st.ring and (len(st.ring) > self.cfg.ring_max_frames or st.ring[0].capture_time < horizon):
            old = st.ring.popleft()
            old.payload = None
        # closed windows that ended well before the newest frame are done
        st.windows = [w for w in st.windows if not (w.cleared and w.end < st.latest - timedelta(seconds=60))]
        for it in st.ring:  # stored frames need their JPEG no more, except for incident re-indexing
            if it.stored and it.file is not None:
                it.payload = None

    def open_windows(self, camera: str) -> list[IncidentWindow]:
        return list(self._cam(camera).windows)

    def ring_size(self, camera: str) -> int:
        return len(self._cam(camera).ring)


# --------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class RetentionEntry:
    file: str
    capture_time: datetime
    bytes: int
    labelled: bool = False


@dataclass
class RetentionPlan:
    delete: list[str]
    deleted_bytes: int
    kept_bytes: int
    by_rule: dict[str, int]


def plan_retention(
    entries: Iterable[RetentionEntry],
    *,
    now: datetime,
    max_age_days: float,
    max_bytes: int,
    keep_labelled: bool = True,
) -> RetentionPlan:
    """Files to delete (pure).

    1. Age: frames captured more than ``max_age_days`` ago go — labelled frames stay when
       ``keep_labelled`` (they are training data).
    2. Size: while the rest exceeds ``max_bytes``, delete the oldest unlabelled frames first, then
       the oldest labelled ones (labels are the most expensive thing in the archive).
    """
    cutoff = now - timedelta(days=max_age_days)
    keep: list[RetentionEntry] = []
    delete: list[str] = []
    deleted_bytes = 0
    by_rule = {"age": 0, "size": 0}
    for e in entries:
        if e.capture_time < cutoff and not (keep_labelled and e.labelled):
            delete.append(e.file)
            deleted_bytes += e.bytes
            by_rule["age"] += 1
        else:
            keep.append(e)
    total = sum(e.bytes for e in keep)
    if total > max_bytes:
        keep.sort(key=lambda e: (e.labelled, e.capture_time, e.file))
        i = 0
        while total > max_bytes and i < len(keep):
            e = keep[i]
            delete.append(e.file)
            deleted_bytes += e.bytes
            total -= e.bytes
            by_rule["size"] += 1
            i += 1
    return RetentionPlan(delete=delete, deleted_bytes=deleted_bytes, kept_bytes=total, by_rule=by_rule)
