"""The archive's file edge: write JPEGs and index lines, apply retention. Local folder store.

Layout and index format: spillwatch/archive.py (the contract training and replay read).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from processors.archive_policy import Decision, RetentionEntry, RetentionPlan, plan_retention
from spillwatch.archive import (
    FRAMES_PREFIX,
    IndexRecord,
    append_records,
    frame_relpath,
    frames_index_path,
    index_dir,
    load_archive,
)
from spillwatch.logs import get_logger

log = get_logger("processors.archive_store")


class ArchiveStore:
    """Writes archived frames under ``root`` (see spillwatch/archive.py for the layout)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        index_dir(self.root).mkdir(parents=True, exist_ok=True)

    def write(self, decisions: list[Decision]) -> list[tuple[Decision, IndexRecord]]:
        """Write each decision's JPEG (once) and append its index line; returns what was written."""
        by_index: dict[Path, list[IndexRecord]] = {}
        done: list[tuple[Decision, IndexRecord]] = []
        for d in decisions:
            it = d.item
            if it.file is None:
                if it.payload is None:
                    log.warning("frame payload gone before it could be stored", camera=it.camera, seq=it.seq)
                    continue
                it.file, size = self._write_jpeg(it.camera, it.capture_time, it.seq, it.payload)
            else:
                size = 0
            rec = IndexRecord(
                camera=it.camera,
                capture_time=it.capture_time,
                seq=it.seq,
                score=it.score,
                model_version=it.model_version,
                incident_id=d.incident_id or it.incident_id,
                label=it.label,  # type: ignore[arg-type]
                suppressed_by=it.suppressed_by,
                file=it.file,
                reason=d.reason,  # type: ignore[arg-type]
                bytes=size,
            )
            by_index.setdefault(frames_index_path(self.root, it.capture_time), []).append(rec)
            done.append((d, rec))
        for path, recs in by_index.items():
            append_records(path, recs)
        return done

    def _write_jpeg(self, camera: str, capture_time: datetime, seq: int, data: bytes) -> tuple[str, int]:
        """Atomic write; a redelivered identical frame reuses its file, a different frame with the
        same (camera, date, seq) — a producer restart — gets a ``-N`` suffix."""
        n = 0
        while True:
            rel = frame_relpath(camera, capture_time, seq, f"-{n}" if n else "")
            path = self.root / rel
            if path.exists():
                try:
                    if path.stat().st_size == len(data) and path.read_bytes() == data:
                        return rel, len(data)
                except OSError:
                    pass
                n += 1
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            return rel, len(data)


@dataclass
class RetentionResult:
    plan: RetentionPlan
    removed_index_files: list[str]

    def as_dict(self) -> dict[str, object]:
        return {
            "deleted": len(self.plan.delete),
            "deleted_bytes": self.plan.deleted_bytes,
            "kept_bytes": self.plan.kept_bytes,
            "by_rule": self.plan.by_rule,
            "removed_index_files": self.removed_index_files,
        }


def apply_retention(
    root: Path | str,
    *,
    max_age_days: float,
    max_bytes: int,
    keep_labelled: bool = True,
    now: datetime | None = None,
    dry_run: bool = False,
) -> RetentionResult:
    """Delete what ``plan_retention`` picks; drop index files of dates with no frame left."""
    root = Path(root)
    now = now or datetime.now(UTC)
    frames = load_archive(root)
    entries = []
    for f in frames:
        size = f.bytes
        if not size:
            try:
                size = (root / f.file).stat().st_size
            except OSError:
                continue
        entries.append(RetentionEntry(f.file, f.capture_time, size, f.label is not None))
    plan = plan_retention(
        entries, now=now, max_age_days=max_age_days, max_bytes=max_bytes, keep_labelled=keep_labelled
    )
    removed: list[str] = []
    if dry_run:
        return RetentionResult(plan, removed)
    for rel in plan.delete:
        p = root / rel
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        _rmdir_empty(p.parent, stop=root)
    gone = set(plan.delete)
    live_dates = {f.capture_time.astimezone(UTC).strftime("%Y-%m-%d") for f in frames if f.file not in gone}
    cutoff_day = now.astimezone(UTC).strftime("%Y-%m-%d")
    for idx in sorted(index_dir(root).glob(f"{FRAMES_PREFIX}*.jsonl")):
        day = idx.stem[len(FRAMES_PREFIX) :]
        if day not in live_dates and day < cutoff_day:
            idx.unlink(missing_ok=True)
            removed.append(idx.name)
    log.info("retention applied", **RetentionResult(plan, removed).as_dict())
    return RetentionResult(plan, removed)


def _rmdir_empty(d: Path, stop: Path) -> None:
    stop = stop.resolve()
    d = d.resolve()
    while d != stop and stop in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent
