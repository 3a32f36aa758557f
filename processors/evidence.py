"""Evidence snapshots: the confirming frame with the spill region (and zone) drawn on it.

How the aggregator gets the frame (it only sees classifications): the classifier keeps the JPEG of
every *suspicious* frame (spill_prob >= the camera's threshold) in Redis for a short time
(``RedisKeys.evidence_frame``: ``P:frame:<camera>:<seq>``, TTL ``aggregator.evidence_frame_ttl_s``). The confirming frame of an
incident is always such a frame (its score, and so its probability, is at or above the threshold),
so on ``confirmed`` the aggregator fetches it, draws the region and writes
``<alerting.evidence_dir>/<incident id>.jpg`` (a volume shared with alerting); the path goes into
``Evidence.snapshot_ref``. Only suspicious frames are kept (none from a clean scene), so Redis
memory stays small; the file name is the incident id, so a retried write is idempotent.
A missing frame (expired, classifier ran without Redis) gives an alert without snapshot, never
a lost alert.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from spillwatch.events import Region
from spillwatch.model import ImageDecodeError, decode_jpeg


def render_snapshot(
    jpeg: bytes,
    region: Region | None,
    zone: Sequence[tuple[float, float]] | None = None,
    spill_map: Sequence[Sequence[int]] | None = None,
    map_threshold: float = 0.5,
    label: str = "",
) -> bytes:
    """The frame with the spill cells shaded, the region boxed (red) and the zone outlined (yellow)."""
    img = decode_jpeg(jpeg)
    h, w = img.shape[:2]
    if spill_map:
        grid = np.asarray(spill_map, np.float32) / 255.0
        if grid.ndim == 2 and grid.size:
            cells = cv2.resize((grid >= map_threshold).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            overlay = img.copy()
            overlay[cells.astype(bool)] = (0, 0, 255)
            img = cv2.addWeighted(overlay, 0.35, img, 0.65, 0)
    if zone:
        pts = np.array([[int(x * (w - 1)), int(y * (h - 1))] for x, y in zone], np.int32)
        cv2.polylines(img, [pts], isClosed=True, color=(0, 220, 255), thickness=2)
    if region is not None:
        p0 = (int(region.x0 * (w - 1)), int(region.y0 * (h - 1)))
        p1 = (int(region.x1 * (w - 1)), int(region.y1 * (h - 1)))
        cv2.rectangle(img, p0, p1, (0, 0, 255), 2)
    if label:
        cv2.putText(img, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:  # pragma: no cover - encoding a decoded image does not fail
        raise ImageDecodeError("could not encode the snapshot")
    return buf.tobytes()


def write_snapshot(directory: Path, incident_id: str, data: bytes) -> Path:
    """Write atomically (temp file + rename) as ``<dir>/<incident id>.jpg``; returns the absolute path."""
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_.:" else "_" for c in incident_id)
    path = (directory / f"{safe}.jpg").resolve()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
