"""Operator labels for archived incidents and frames.

Two ways in, one record format (``LabelRecord`` lines in ``ROOT/index/labels.jsonl``):

* ``spillwatch label INCIDENT --true|--false`` appends a label directly (``label_incident``);
* the acknowledgement endpoint / ``spillwatch ack`` stores ``label`` ("true"/"false") in the ack
  hash ``RedisKeys.ack`` (spillwatch/redis_keys.py); the archiver copies those into
  the archive every ``archive.label_sync_s`` (``sync_ack_labels``), so labels survive the ack TTL.

Frames inherit at read time (spillwatch/archive.py: ``resolve_labels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from spillwatch.archive import (
    LabelRecord,
    append_label,
    load_archive,
    read_incidents,
    read_labels,
)
from spillwatch.logs import get_logger
from spillwatch.redis_keys import RedisKeys

log = get_logger("processors.archive_labels")


@dataclass
class LabelResult:
    incident_id: str
    label: str
    frames: int
    spill_frames: int
    clean_frames: int
    unlabelled_context_frames: int
    known_incident: bool

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def label_incident(
    root: Path | str, incident_id: str, is_spill: bool, *, by: str = "", source: str = "cli", at: datetime | None = None
) -> LabelResult:
    """Record the verdict for ``incident_id`` and report what its frames now carry."""
    label = "spill" if is_spill else "clean"
    kw: dict[str, Any] = {"label": label, "incident_id": incident_id, "source": source, "by": by}
    if at is not None:
        kw["at"] = at
    append_label(root, LabelRecord(**kw))
    frames = [f for f in load_archive(root) if f.incident_id == incident_id]
    known = incident_id in read_incidents(root) or bool(frames)
    if not known:
        log.warning("label recorded for an incident the archive does not hold (yet)", incident_id=incident_id)
    return LabelResult(
        incident_id=incident_id,
        label=label,
        frames=len(frames),
        spill_frames=sum(f.label == "spill" for f in frames),
        clean_frames=sum(f.label == "clean" for f in frames),
        unlabelled_context_frames=sum(f.label is None for f in frames),
        known_incident=known,
    )


def label_frames(root: Path | str, files: list[str], is_spill: bool, *, by: str = "", source: str = "cli") -> int:
    """Label individual archived frames (``file`` as in the index), e.g. ordinary samples."""
    label = "spill" if is_spill else "clean"
    for f in files:
        append_label(root, LabelRecord(label=label, file=f, source=source, by=by))  # type: ignore[arg-type]
    return len(files)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def sync_ack_labels(redis: Any, key_prefix: str, root: Path | str) -> int:
    """Copy labels carried by acknowledgements (alerting's ack hashes) into the archive.

    Idempotent: an ack label already recorded (same incident, label and ack time) is not repeated.
    Returns the number of labels appended.
    """
    keys = RedisKeys(key_prefix)
    seen = {(r.incident_id, r.label, r.at.isoformat()) for r in read_labels(root) if r.source == "ack"}
    added = 0
    for key in redis.scan_iter(match=keys.ack_pattern, count=500):
        raw = redis.hgetall(key)
        if not raw:
            continue
        d = {_s(k): _s(v) for k, v in raw.items()}
        verdict = d.get("label")
        if verdict not in ("true", "false"):
            continue
        incident_id = d.get("incident_id") or keys.incident_of_ack_key(_s(key))
        try:
            at = datetime.fromisoformat(d["at"])
        except (KeyError, ValueError):
            continue
        label = "spill" if verdict == "true" else "clean"
        rec = LabelRecord(label=label, incident_id=incident_id, source="ack", by=d.get("by", ""), at=at)  # type: ignore[arg-type]
        if (rec.incident_id, rec.label, rec.at.isoformat()) in seen:
            continue
        append_label(root, rec)
        seen.add((rec.incident_id, rec.label, rec.at.isoformat()))
        added += 1
    if added:
        log.info("ack labels copied into the archive", added=added)
    return added
