"""The frame archive's on-disk format and how its labels resolve (a CONTRACT).

Written by the archiver (processors/archiver.py), labelled by ``spillwatch label``, read by the
archiver's retention, ``spillwatch archive export`` / ``train --archive`` (training/archive_export.py)
and ``spillwatch replay --archive``. Pure file format code: no Kafka, no Redis.

Layout under the archive root ``ROOT``::

    ROOT/<camera>/<YYYY-MM-DD>/<seq>.jpg        one archived frame (UTC capture date)
    ROOT/index/frames-<YYYY-MM-DD>.jsonl        append-only IndexRecord lines, by capture date
    ROOT/index/incidents.jsonl                  append-only IncidentRecord lines (alert states seen)
    ROOT/index/labels.jsonl                     append-only LabelRecord lines (operator verdicts)

Append-only means a frame can appear in several index lines (first stored as a high score, later
joined to an incident whose alert arrived afterwards): readers merge lines by ``file`` — the first
line gives the capture data, any line's ``incident_id`` is kept, the strongest ``reason`` wins
(incident > low_score > sample). A line whose JPEG no longer exists (retention deleted it) is
skipped. Labels are resolved at read time, so labelling never rewrites a file:

* a label on a frame (``file``) wins over everything; then a label stored with the frame (ground
  truth carried by the frame header: replays, synthetic clips — never set by live cameras); then
  the label of its incident; the newest label line wins;
* a *false alarm* labels every frame of the incident ``clean`` (hard negatives);
* a *true spill* labels the incident's frames from the first suspicious frame (``first_seen``) to
  the clearing (``cleared_at``; the last frame while still open) ``spill``; frames of the
  before/after context window stay unlabelled (the spill may not be there yet / any more);
* ordinary samples stay unlabelled until a frame label names them.

The export to a training manifest (time-block split) lives with its users in training/archive_export.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spillwatch.events import UtcDatetime, utcnow

FORMAT_VERSION = 1
INDEX_DIR = "index"
FRAMES_PREFIX = "frames-"
INCIDENTS_FILE = "incidents.jsonl"
LABELS_FILE = "labels.jsonl"

Reason = Literal["incident", "low_score", "sample"]
Label = Literal["spill", "clean"]
REASON_PRIORITY: dict[str, int] = {"sample": 0, "low_score": 1, "incident": 2}


class _Rec(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    v: int = FORMAT_VERSION


class IndexRecord(_Rec):
    """One archived frame (or an update of one: same ``file``, e.g. an incident id learnt later)."""

    camera: str
    capture_time: UtcDatetime
    seq: int
    score: float | None = None
    model_version: str = ""
    incident_id: str | None = None
    label: Label | None = Field(default=None, description="label known when stored (replay ground truth)")
    suppressed_by: list[str] | None = Field(
        default=None, description="learned false alarms (suppression entry ids) that suppressed cells of this frame"
    )
    file: str = Field(description="path of the JPEG relative to the archive root (posix)")
    reason: Reason
    bytes: int = 0
    archived_at: UtcDatetime = Field(default_factory=utcnow)


class IncidentRecord(_Rec):
    """An alert state the archiver saw (confirmed / escalated / cleared)."""

    incident_id: str
    camera: str
    state: str
    first_seen: UtcDatetime
    confirmed_at: UtcDatetime
    cleared_at: UtcDatetime | None = None
    model_version: str = ""
    before_s: float | None = Field(default=None, description="archiver's context window before first_seen")
    after_s: float | None = Field(default=None, description="archiver's context window after cleared_at")
    at: UtcDatetime = Field(default_factory=utcnow)


class LabelRecord(_Rec):
    """An operator's verdict on an incident (``incident_id``) or on one frame (``file``)."""

    label: Label
    incident_id: str | None = None
    file: str | None = None
    source: str = "cli"
    by: str = ""
    at: UtcDatetime = Field(default_factory=utcnow)


# --------------------------------------------------------------------------- paths


def frame_relpath(camera: str, capture_time: datetime, seq: int, suffix: str = "") -> str:
    """``<camera>/<YYYY-MM-DD>/<seq><suffix>.jpg`` (UTC date), posix, relative to the root."""
    day = capture_time.astimezone(UTC).strftime("%Y-%m-%d")
    return f"{_safe(camera)}/{day}/{seq}{suffix}.jpg"


def _safe(name: str) -> str:
    """Camera ids are ``[A-Za-z0-9._:-]``; keep them usable as one folder name everywhere."""
    out = name.replace("/", "_").replace("\\", "_").replace(":", "_")
    return "_" + out if out in ("", ".", "..", INDEX_DIR) else out


def index_dir(root: Path | str) -> Path:
    return Path(root) / INDEX_DIR


def frames_index_path(root: Path | str, capture_time: datetime) -> Path:
    return index_dir(root) / f"{FRAMES_PREFIX}{capture_time.astimezone(UTC).strftime('%Y-%m-%d')}.jsonl"


def append_records(path: Path, records: Iterable[_Rec]) -> int:
    """Append JSON lines (one write + flush per call, so a reader never sees half a line)."""
    lines = "".join(r.model_dump_json() + "\n" for r in records)
    if not lines:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(lines)
        f.flush()
    return lines.count("\n")


def append_label(root: Path | str, record: LabelRecord) -> None:
    append_records(index_dir(root) / LABELS_FILE, [record])


def append_incident(root: Path | str, record: IncidentRecord) -> None:
    append_records(index_dir(root) / INCIDENTS_FILE, [record])


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line after a crash: skip it, never fail the reader
            if isinstance(obj, dict):
                yield obj


def read_index_records(root: Path | str) -> Iterator[IndexRecord]:
    for p in sorted(index_dir(root).glob(f"{FRAMES_PREFIX}*.jsonl")):
        for obj in _read_jsonl(p):
            try:
                yield IndexRecord.model_validate(obj)
            except ValueError:
                continue


def read_incidents(root: Path | str) -> dict[str, IncidentInfo]:
    """Incidents by id, merged over their alert states (earliest first_seen, latest clearing)."""
    out: dict[str, IncidentInfo] = {}
    for obj in _read_jsonl(index_dir(root) / INCIDENTS_FILE):
        try:
            r = IncidentRecord.model_validate(obj)
        except ValueError:
            continue
        cur = out.get(r.incident_id)
        if cur is None:
            cur = out[r.incident_id] = IncidentInfo(r.incident_id, r.camera, r.first_seen, r.confirmed_at, r.cleared_at)
        else:
            cur.first_seen = min(cur.first_seen, r.first_seen)
            cur.confirmed_at = min(cur.confirmed_at, r.confirmed_at)
            if r.cleared_at is not None:
                cur.cleared_at = r.cleared_at if cur.cleared_at is None else max(cur.cleared_at, r.cleared_at)
        if r.before_s is not None:
            cur.before_s = r.before_s
        if r.after_s is not None:
            cur.after_s = r.after_s
    return out


def read_labels(root: Path | str) -> list[LabelRecord]:
    out: list[LabelRecord] = []
    for obj in _read_jsonl(index_dir(root) / LABELS_FILE):
        try:
            out.append(LabelRecord.model_validate(obj))
        except ValueError:
            continue
    return out


# --------------------------------------------------------------------------- the resolved view


@dataclass
class IncidentInfo:
    incident_id: str
    camera: str
    first_seen: datetime
    confirmed_at: datetime
    cleared_at: datetime | None = None
    before_s: float | None = None
    after_s: float | None = None

    def in_window(self, t: datetime) -> bool:
        """Whether ``t`` lies in the incident's context window (unknown bounds count as inside).

        The archiver stores every frame while an incident looks open; when the clearing arrives
        after later frames (topics are consumed independently), those frames stay stored but are
        no incident frames."""
        if self.before_s is not None and t < self.first_seen - timedelta(seconds=self.before_s):
            return False
        if self.after_s is not None and self.cleared_at is not None and t > self.cleared_at + timedelta(seconds=self.after_s):
            return False
        return True


@dataclass
class ArchivedFrame:
    """One archived frame as readers see it: index lines merged, labels resolved."""

    camera: str
    capture_time: datetime
    seq: int
    file: str
    reason: str
    score: float | None = None
    model_version: str = ""
    incident_id: str | None = None
    label: Label | None = None
    label_source: str | None = None  # "frame", "incident" or "stored"
    bytes: int = 0
    suppressed_by: list[str] | None = None  # suppression entries that matched cells of it


def merge_index(records: Iterable[IndexRecord]) -> dict[str, ArchivedFrame]:
    """Merge append-only index lines by ``file`` (pure)."""
    out: dict[str, ArchivedFrame] = {}
    for r in records:
        cur = out.get(r.file)
        if cur is None:
            out[r.file] = ArchivedFrame(
                camera=r.camera,
                capture_time=r.capture_time,
                seq=r.seq,
                file=r.file,
                reason=r.reason,
                score=r.score,
                model_version=r.model_version,
                incident_id=r.incident_id,
                label=r.label,
                label_source="stored" if r.label else None,
                bytes=r.bytes,
                suppressed_by=r.suppressed_by,
            )
            continue
        if r.incident_id and not cur.incident_id:
            cur.incident_id = r.incident_id
        if REASON_PRIORITY.get(r.reason, 0) > REASON_PRIORITY.get(cur.reason, 0):
            cur.reason = r.reason
        if cur.score is None and r.score is not None:
            cur.score = r.score
        if r.bytes and not cur.bytes:
            cur.bytes = r.bytes
        if r.suppressed_by and not cur.suppressed_by:
            cur.suppressed_by = r.suppressed_by
    return out


def resolve_labels(
    frames: Iterable[ArchivedFrame], incidents: dict[str, IncidentInfo], labels: Iterable[LabelRecord]
) -> None:
    """Set each frame's effective label in place (pure; rules in the module docstring)."""
    by_incident: dict[str, LabelRecord] = {}
    by_file: dict[str, LabelRecord] = {}
    for lab in sorted(enumerate(labels), key=lambda il: (il[1].at, il[0])):  # newest wins, file order ties
        rec = lab[1]
        if rec.file:
            by_file[rec.file] = rec
        elif rec.incident_id:
            by_incident[rec.incident_id] = rec
    for fr in frames:
        if fr.file in by_file:
            fr.label, fr.label_source = by_file[fr.file].label, "frame"
            continue
        if fr.label_source == "stored":  # ground truth that travelled with the frame (replay, synthetic clips)
            continue
        if fr.incident_id and fr.incident_id in by_incident:
            fr.label = incident_frame_label(by_incident[fr.incident_id].label, fr.capture_time, incidents.get(fr.incident_id))
            fr.label_source = "incident" if fr.label else None


def incident_frame_label(verdict: Label, capture_time: datetime, inc: IncidentInfo | None) -> Label | None:
    """The label an incident frame inherits from the incident's verdict (pure).

    False alarm -> every frame clean. True spill -> frames between the first suspicious frame and
    the clearing are spill; context frames before/after stay unlabelled (None).
    """
    if verdict == "clean":
        return "clean"
    if inc is None:
        return "spill"
    if capture_time < inc.first_seen:
        return None
    if inc.cleared_at is not None and capture_time > inc.cleared_at:
        return None
    return "spill"


def load_archive(root: Path | str, *, existing_only: bool = True) -> list[ArchivedFrame]:
    """Every archived frame (merged, labels resolved), sorted by camera then capture time."""
    root = Path(root)
    merged = merge_index(read_index_records(root))
    frames = [f for f in merged.values() if not existing_only or (root / f.file).is_file()]
    incidents = read_incidents(root)
    for f in frames:
        inc = incidents.get(f.incident_id) if f.incident_id else None
        if inc is not None and not inc.in_window(f.capture_time):
            f.incident_id = None
    resolve_labels(frames, incidents, read_labels(root))
    frames.sort(key=lambda f: (f.camera, f.capture_time, f.seq))
    return frames


def incident_frames(root: Path | str, incident_id: str) -> list[ArchivedFrame]:
    return [f for f in load_archive(root) if f.incident_id == incident_id]
