"""The labelled archive as a training manifest: the time-block split and the export.

``export_manifest`` writes the labelled frames of an archive (spillwatch/archive.py: layout and
label resolution) as a manifest.jsonl in the shared format of the data sets (file relative to the
manifest's folder, label, source="archive", sequence=<camera>, liquids=[], polygons=[], split) plus
camera, capture_time, incident_id, model_version, score and reason. The split is by camera and time
block (``assign_splits``), so near-duplicate consecutive frames never straddle train and val. Used
by ``spillwatch archive export`` and ``spillwatch train --archive``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spillwatch.archive import ArchivedFrame, index_dir, load_archive


@dataclass(frozen=True)
class SplitConfig:
    """Time-block split by camera: each (camera, block) goes wholly to train or val.

    A block is ``block_s`` seconds of one camera's time (UTC epoch buckets); an incident's frames all
    belong to the block of the incident's first frame, so an incident is never split. Blocks are
    assigned by a hash of (seed, camera, block) — stable as the archive grows (a frame never moves
    from val to train later). ``val_cameras`` forces whole cameras into val. Frames closer than
    ``guard_s`` to a frame of the same camera on the other side are left out (counted), so
    near-duplicates at block edges never straddle the split.
    """

    block_s: float = 3600.0
    val_fraction: float = 0.2
    guard_s: float = 60.0
    seed: str = "spillwatch-archive"
    val_cameras: frozenset[str] = frozenset()


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def assign_splits(frames: list[ArchivedFrame], cfg: SplitConfig = SplitConfig()) -> tuple[dict[str, str], list[str]]:
    """(file -> "train"|"val", files left out by the guard). Pure."""
    block_of_incident: dict[tuple[str, str], int] = {}
    for f in sorted(frames, key=lambda f: f.capture_time):
        if f.incident_id and (f.camera, f.incident_id) not in block_of_incident:
            block_of_incident[(f.camera, f.incident_id)] = math.floor(f.capture_time.timestamp() / cfg.block_s)
    split: dict[str, str] = {}
    for f in frames:
        if f.camera in cfg.val_cameras:
            split[f.file] = "val"
            continue
        if f.incident_id:
            block = block_of_incident[(f.camera, f.incident_id)]
        else:
            block = math.floor(f.capture_time.timestamp() / cfg.block_s)
        u = _unit_hash(f"{cfg.seed}|{f.camera}|{block}")
        split[f.file] = "val" if u < cfg.val_fraction else "train"
    dropped: list[str] = []
    if cfg.guard_s > 0:
        by_cam: dict[str, list[ArchivedFrame]] = {}
        for f in frames:
            by_cam.setdefault(f.camera, []).append(f)
        for cam_frames in by_cam.values():
            cam_frames.sort(key=lambda f: f.capture_time)
            times = [f.capture_time.timestamp() for f in cam_frames]
            for i, f in enumerate(cam_frames):
                # look both ways for a frame of the other split within guard_s; drop the val side
                if split[f.file] != "val":
                    continue
                for j in (range(i - 1, -1, -1), range(i + 1, len(cam_frames))):
                    hit = False
                    for k in j:
                        if abs(times[k] - times[i]) > cfg.guard_s:
                            break
                        if split[cam_frames[k].file] == "train":
                            hit = True
                            break
                    if hit:
                        dropped.append(f.file)
                        break
    for d in dropped:
        split.pop(d, None)
    return split, dropped


@dataclass
class ExportSummary:
    manifest: str
    n: int = 0
    by_split_label: dict[str, int] = field(default_factory=dict)
    unlabelled_skipped: int = 0
    guard_dropped: int = 0
    cameras: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "n": self.n,
            "by_split_label": self.by_split_label,
            "unlabelled_skipped": self.unlabelled_skipped,
            "guard_dropped": self.guard_dropped,
            "cameras": self.cameras,
        }


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def archive_to_manifest_records(
    root: Path | str,
    relative_to: Path | str | None = None,
    split: SplitConfig = SplitConfig(),
    *,
    summary: ExportSummary | None = None,
) -> list[dict[str, Any]]:
    """Labelled archived frames as manifest records (the shared manifest.jsonl format).

    ``file`` is relative to ``relative_to`` (the folder the manifest will live in; default: the
    archive root itself). Unlabelled frames are left out. Records are sorted by camera and time.
    """
    root = Path(root).resolve()
    base = Path(relative_to).resolve() if relative_to is not None else root
    everything = load_archive(root)
    frames = [f for f in everything if f.label is not None]
    splits, dropped = assign_splits(frames, split)
    out: list[dict[str, Any]] = []
    for f in frames:
        s = splits.get(f.file)
        if s is None:
            continue
        out.append(
            {
                "file": Path(os.path.relpath(root / f.file, base)).as_posix(),
                "label": f.label,
                "source": "archive",
                "sequence": f.camera,
                "liquids": [],
                "polygons": [],
                "split": s,
                "camera": f.camera,
                "capture_time": _iso(f.capture_time),
                "seq": f.seq,
                "incident_id": f.incident_id,
                "model_version": f.model_version,
                "score": f.score,
                "reason": f.reason,
                "label_source": f.label_source,
            }
        )
    if summary is not None:
        summary.n = len(out)
        summary.guard_dropped = len(dropped)
        summary.unlabelled_skipped = len(everything) - len(frames)
        counts: dict[str, int] = {}
        for r in out:
            k = f"{r['split']}/{r['label']}"
            counts[k] = counts.get(k, 0) + 1
        summary.by_split_label = dict(sorted(counts.items()))
        summary.cameras = sorted({r["camera"] for r in out})
    return out


def export_manifest(root: Path | str, out_path: Path | str, split: SplitConfig = SplitConfig()) -> ExportSummary:
    """Write the labelled archive as ``out_path`` (manifest.jsonl format); returns a summary."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary(manifest=str(out))
    records = archive_to_manifest_records(root, out.parent, split, summary=summary)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
    os.replace(tmp, out)
    return summary


def is_archive_root(path: Path | str) -> bool:
    """True for an archive root (a folder with ``index/``), False for a manifest file."""
    p = Path(path)
    return p.is_dir() and index_dir(p).is_dir()


def resolve_archive_manifest(path: Path | str, out_dir: Path | str, split: SplitConfig = SplitConfig()) -> Path:
    """For ``--archive PATH``: a manifest file is returned as is; an archive root is exported to
    ``out_dir/archive-manifest.jsonl`` (labelled frames, time-block split) and that path returned."""
    p = Path(path)
    if not is_archive_root(p):
        if not p.is_file():
            raise FileNotFoundError(f"--archive {p}: neither an archive root (with index/) nor a manifest file")
        return p
    out = Path(out_dir) / "archive-manifest.jsonl"
    export_manifest(p, out, split)
    return out
