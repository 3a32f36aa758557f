"""Camera-health state machine (pure: the caller passes monotonic ``now`` seconds).

States: ``online`` while frames arrive; ``stalled`` after ``stall_after_s`` without a frame;
``offline`` after the ``offline_after_s`` grace period without a frame (a source that cannot be
opened counts from the moment the camera started or last delivered). A frame brings it back online.
A finite source that ends is reported ``offline`` with the reason. Transitions are reported at
once; the current state is repeated as a heartbeat every ``heartbeat_s``.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from spillwatch.events import CameraState


@dataclass(frozen=True)
class HealthReport:
    """One heartbeat to publish (``changed``: a transition rather than a repeat)."""

    state: CameraState
    changed: bool
    fps: float
    frames: int
    last_frame_time: datetime | None
    error: str | None


class HealthTracker:
    def __init__(
        self,
        *,
        stall_after_s: float,
        offline_after_s: float,
        heartbeat_s: float,
        start: float,
        fps_window_s: float = 10.0,
    ) -> None:
        self.stall_after_s = stall_after_s
        self.offline_after_s = offline_after_s
        self.heartbeat_s = heartbeat_s
        self.fps_window_s = fps_window_s
        self.state: CameraState | None = None
        self.frames = 0
        self.error: str | None = None
        self.ended = False
        self._start = start
        self._last_seen = start  # last frame, or when we started waiting
        self._last_frame_wall: datetime | None = None
        self._last_emit: float | None = None
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ inputs
    def on_frame(self, now: float, wall: datetime | None = None) -> HealthReport | None:
        with self._lock:
            self.frames += 1
            self._last_seen = now
            self._last_frame_wall = wall or self._last_frame_wall
            self._times.append(now)
            self.error = None
            self.ended = False
            return self._transition(CameraState.ONLINE, now)

    def on_error(self, now: float, error: str) -> None:
        """The source failed (open/read); the state follows from the silence, the reason is kept."""
        with self._lock:
            self.error = error

    def on_end(self, now: float, reason: str = "source ended") -> HealthReport | None:
        with self._lock:
            self.ended = True
            self.error = reason
            return self._transition(CameraState.OFFLINE, now, force=True)

    def tick(self, now: float) -> HealthReport | None:
        with self._lock:
            if self.ended:
                return None
            silence = now - self._last_seen
            target = self.state
            if silence >= self.offline_after_s:
                target = CameraState.OFFLINE
            elif silence >= self.stall_after_s:
                target = CameraState.STALLED if self.state != CameraState.OFFLINE else CameraState.OFFLINE
            if target is not None and target != self.state:
                return self._transition(target, now)
            if self.state is not None and self._last_emit is not None and now - self._last_emit >= self.heartbeat_s:
                self._last_emit = now
                return self._report(now, changed=False)
            return None

    # ------------------------------------------------------------------ helpers
    def fps(self, now: float) -> float:
        while self._times and now - self._times[0] > self.fps_window_s:
            self._times.popleft()
        span = max(1.0, min(self.fps_window_s, now - self._start))
        return len(self._times) / span

    def _transition(self, target: CameraState, now: float, force: bool = False) -> HealthReport | None:
        if target == self.state and not force:
            return None
        self.state = target
        self._last_emit = now
        return self._report(now, changed=True)

    def _report(self, now: float, changed: bool) -> HealthReport:
        return HealthReport(
            state=self.state,  # type: ignore[arg-type]
            changed=changed,
            fps=round(self.fps(now), 3),
            frames=self.frames,
            last_frame_time=self._last_frame_wall,
            error=self.error,
        )
