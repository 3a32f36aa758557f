"""What a replay republishes: frames from an archive, a manifest or a video, in capture order.

* archive (``--archive ROOT``): every archived frame with its camera, seq, original capture time
  and resolved label (spillwatch/archive.py);
* manifest (``--manifest PATH``): one line = one camera frame; ``camera`` (default ``replay``),
  ``seq`` and ``capture_time`` are used when present, otherwise the frames of a camera are spaced
  by ``1/fps`` in line order from ``start``;
* video (``--video PATH``): sampled at ``fps`` (by the video's own timestamps), downsized to
  ``max_width`` and JPEG-encoded like a producer does; labelled only when a sidecar
  ``<video>.json`` with per-frame ``labels`` and ``fps`` sits beside it (training/synth clips:
  ``ClipTruth``), each sample taking the label of the video frame it was read from.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_CAMERA = "replay"


@dataclass(frozen=True)
class SourceFrame:
    camera: str
    seq: int
    capture_time: datetime
    label: str | None
    load: Callable[[], bytes]  # the JPEG, read lazily
    ref: str = ""  # file or video position, for the report


def _reader(path: Path) -> Callable[[], bytes]:
    return lambda: path.read_bytes()


def _held(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _parse_time(v: Any) -> datetime | None:
    if not v:
        return None
    try:
        t = datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def from_archive(root: Path | str) -> list[SourceFrame]:
    from spillwatch.archive import load_archive

    root = Path(root)
    return [
        SourceFrame(f.camera, f.seq, f.capture_time, f.label, _reader(root / f.file), f.file)
        for f in load_archive(root)
    ]


def from_manifest(path: Path | str, *, fps: float = 2.0, start: datetime | None = None, split: str | None = None) -> list[SourceFrame]:
    p = Path(path)
    start = start or datetime.now(UTC).replace(microsecond=0)
    counters: dict[str, int] = {}
    out: list[SourceFrame] = []
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            obj = json.loads(line)
            if split and obj.get("split") != split:
                continue
            cam = str(obj.get("camera") or DEFAULT_CAMERA)
            i = counters.get(cam, 0)
            counters[cam] = i + 1
            t = _parse_time(obj.get("capture_time")) or (start + timedelta(seconds=i / fps))
            seq = int(obj["seq"]) if isinstance(obj.get("seq"), int) else i
            label = obj.get("label") if obj.get("label") in ("spill", "clean") else None
            out.append(SourceFrame(cam, seq, t, label, _reader(p.parent / obj["file"]), str(obj["file"])))
    out.sort(key=lambda f: f.capture_time)  # stable: line order among equal times
    return out


def from_video(
    path: Path | str, *, fps: float = 2.0, camera: str = DEFAULT_CAMERA, start: datetime | None = None, max_width: int = 480, quality: int = 85
) -> list[SourceFrame]:
    """Decode and sample the whole video now (replays are bounded; frames are small JPEGs)."""
    import cv2

    from producers.imaging import downsize, encode_jpeg

    start = start or datetime.now(UTC).replace(microsecond=0)
    labels, clip_fps = _sidecar_labels(Path(path))
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    out: list[SourceFrame] = []
    next_ms = 0.0
    step_ms = 1000.0 / fps
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            pos = float(cap.get(cv2.CAP_PROP_POS_MSEC))
            if pos + 1e-6 < next_ms:
                continue
            data = encode_jpeg(downsize(img, max_width), quality)
            seq = len(out)
            k = int(round(pos / 1000 * clip_fps)) if labels else -1
            label = labels[k] if 0 <= k < len(labels) and labels[k] in ("spill", "clean") else None
            out.append(SourceFrame(camera, seq, start + timedelta(milliseconds=pos), label, _held(data), f"{pos / 1000:.2f}s"))
            next_ms += step_ms
            while next_ms <= pos:
                next_ms += step_ms
    finally:
        cap.release()
    return out


def _sidecar_labels(video: Path) -> tuple[list[str], float]:
    """Per-frame labels and the clip's fps from ``<video>.json`` (a synthetic clip's truth), or ([], 0)."""
    side = video.with_suffix(".json")
    if not side.is_file():
        return [], 0.0
    try:
        d = json.loads(side.read_text())
        labels, fps = d.get("labels"), float(d.get("fps") or 0)
    except (ValueError, TypeError, AttributeError):
        return [], 0.0
    if not isinstance(labels, list) or fps <= 0:
        return [], 0.0
    return [str(x) for x in labels], fps


def iter_cameras(frames: list[SourceFrame]) -> Iterator[str]:
    seen: set[str] = set()
    for f in frames:
        if f.camera not in seen:
            seen.add(f.camera)
            yield f.camera
