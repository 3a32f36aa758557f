"""Pure sampling and pacing decisions (no I/O).

A camera delivers frames at its own rate; we publish at ``fps`` (spills are static, a low rate with
a confirmation window beats full frame rate). The same sampler serves files (media time from the
container) and live sources (a monotonic wall clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RateSampler:
    """Take at most ``fps`` frames per second of the given time axis.

    ``offer(t)`` is called with every frame's time (seconds, non-decreasing) and says whether to
    publish it. Slots are aligned to the first frame; when the source is slower than ``fps``, every
    frame is taken; after a gap (or a time jump backwards, e.g. a looping file) the schedule restarts.
    """

    fps: float
    _next: float | None = field(default=None, init=False)
    _last: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError("fps must be > 0")

    @property
    def interval(self) -> float:
        return 1.0 / self.fps

    def offer(self, t: float) -> bool:
        # A microsecond of tolerance: media times are rounded (e.g. 1/30 s per frame).
        eps = 1e-6
        if self._last is not None and t < self._last:
            self._next = None  # time went backwards (a looping source restarted): new schedule
        self._last = t
        if self._next is None:
            self._next = t + self.interval
            return True
        if t + eps < self._next:
            return False
        # Advance by whole intervals; after a long gap, realign to this frame instead of bursting.
        self._next += self.interval
        if self._next <= t + eps:
            self._next = t + self.interval
        return True

    def reset(self) -> None:
        self._next = None
        self._last = None


@dataclass
class Pacer:
    """Plays media time at ``speed`` x real time: ``delay(media_t, now)`` is how long to wait.

    ``speed=None`` means as fast as possible (never waits). The clock starts at the first call.
    """

    speed: float | None = 1.0
    _origin: tuple[float, float] | None = field(default=None, init=False)

    def delay(self, media_t: float, now: float) -> float:
        if self.speed is None:
            return 0.0
        if self._origin is None:
            self._origin = (media_t, now)
            return 0.0
        m0, w0 = self._origin
        due = w0 + (media_t - m0) / self.speed
        return max(0.0, due - now)

    def reset(self) -> None:
        self._origin = None


def scaled_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """Size after downsizing to at most ``max_width`` (aspect kept, never upscaled, even sizes kept >= 1)."""
    if width <= max_width:
        return width, height
    new_h = max(1, round(height * max_width / width))
    return max_width, new_h
