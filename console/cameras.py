"""What the console knows about each camera, in memory (one per console instance), fed by
console/feeds.py:

* health: the newest ``CameraHealth`` from ``camera-health`` (state, actual fps, last frame time);
  also kept in Redis (``RedisKeys.console_camera``) so a restarted console shows it at once;
* the newest spill probability (from ``classifications``) and a short per-camera history of scores
  (the incident timeline is cut from it, console/feeds.py);
* a thumbnail: the newest frame read from ``frames`` every ``console.thumbnail_interval_s``.

A camera whose producer stopped sending heartbeats altogether shows ``offline`` once its last
heartbeat is older than ``producer.offline_after_s + 2 * producer.heartbeat_s`` (``effective_state``).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from spillwatch.events import CameraHealth

UNKNOWN = "unknown"


def effective_state(health: CameraHealth | None, now: datetime, stale_after_s: float) -> tuple[str, str | None]:
    """(state, reason) to show: the reported state, or offline when the heartbeats stopped. Pure."""
    if health is None:
        return UNKNOWN, "no heartbeat received yet"
    age = (now - health.at).total_seconds()
    if age > stale_after_s:
        return "offline", f"no heartbeat for {int(age)} s (producer stopped?)"
    return health.state.value, health.error


@dataclass(frozen=True)
class Sample:
    seq: int
    t: float  # capture time, unix s
    p: float
    spill_map: list[list[int]] | None = None


class CameraBoard:
    def __init__(self, history_s: float) -> None:
        self.history_s = history_s
        self._lock = threading.Lock()
        self._health: dict[str, CameraHealth] = {}
        self._thumbs: dict[str, tuple[bytes, datetime]] = {}
        self._latest: dict[str, Sample] = {}
        self._history: dict[str, deque[Sample]] = {}

    # ------------------------------------------------------------------ health
    def set_health(self, h: CameraHealth) -> CameraHealth | None:
        """Keep ``h`` unless a newer heartbeat is known; returns the previous one."""
        with self._lock:
            old = self._health.get(h.camera_id)
            if old is None or h.at >= old.at:
                self._health[h.camera_id] = h
            return old

    def health(self, camera: str) -> CameraHealth | None:
        with self._lock:
            return self._health.get(camera)

    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(set(self._health) | set(self._latest) | set(self._thumbs))

    # ------------------------------------------------------------------ thumbnails
    def set_thumbnail(self, camera: str, jpeg: bytes, capture_time: datetime) -> None:
        with self._lock:
            cur = self._thumbs.get(camera)
            if cur is None or capture_time >= cur[1]:
                self._thumbs[camera] = (jpeg, capture_time)

    def thumbnail(self, camera: str) -> tuple[bytes, datetime] | None:
        with self._lock:
            return self._thumbs.get(camera)

    # ------------------------------------------------------------------ scores
    def add_score(self, camera: str, s: Sample) -> None:
        with self._lock:
            hist = self._history.setdefault(camera, deque())
            hist.append(s)
            while hist and hist[0].t < s.t - self.history_s:
                hist.popleft()
            cur = self._latest.get(camera)
            if cur is None or s.t >= cur.t:
                self._latest[camera] = s

    def latest(self, camera: str) -> Sample | None:
        with self._lock:
            return self._latest.get(camera)

    def scores_between(self, camera: str, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self._history.get(camera, ()) if start <= s.t <= end]

    def sample(self, camera: str, seq: int) -> Sample | None:
        with self._lock:
            return next((s for s in self._history.get(camera, ()) if s.seq == seq), None)


def stale_after_s(offline_after_s: float, heartbeat_s: float) -> float:
    return offline_after_s + 2 * heartbeat_s

