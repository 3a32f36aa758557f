"""Change gating in the classifier worker: run the model only on frames whose scene changed.

Pure logic, no I/O (the classifier core calls it; docs/performance.md says why it runs in the
worker and how it was calibrated). Per camera, the gate keeps a small grayscale thumbnail of the
**last frame the model classified** (not of the previous frame, so a slowly growing spill adds up
until it crosses the threshold) and that frame's classification. A new frame is classified when

* the camera has no reference yet (first frame after start or rebalance), or its producer epoch
  changed, or the frame was captured before the reference (a redelivery);
* the reference is older than ``refresh_s`` (capture time, so replays decide the same way);
* the last classification was "hot": spill probability within ``gating.hot_margin`` log-odds of
  the camera's threshold (or at its clear level, threshold x ``aggregator.clear_threshold_ratio``),
  i.e. a suspicion, an open incident or a score close to the threshold is always judged on fresh
  inferences, so k-of-n confirmation and clearing keep their meaning; a camera stays hot for ``gating.hot_hold_s`` (5 s of capture time) after its last hot
  score, so one low score in a rising, noisy series does not freeze it. One exception: a **settled**
  camera (its last ``gating.settle_frames`` inferred frames, at least the aggregator's window, in a
  row, all at least ``gating.settle_margin`` log-odds above its threshold: a confirmed spill that
  sits there until someone cleans it) reuses its result on frames that did not change beyond the
  warm threshold. Those fresh inferences alone have confirmed it, so a reused score never adds
  evidence that was not seen; any change (a mop, a person, the spill spreading), a score under the
  settle level or the refresh sends it back to the model;
* the scene changed: thumbnails normalised for global brightness (mean subtracted, divided by the
  mean absolute deviation: auto-exposure, flicker), compared block by block (the absolute difference
  of the block means over an 8 x 8 grid: per-pixel sensor and JPEG noise averages out); ``min_blocks``
  blocks at or above ``threshold`` (in units of the frame's own contrast) count as a change. A
  "warm" camera (last score at or above threshold x ``gating.warm_ratio`` but below the hot level:
  further from the threshold than a fresh inference's noise, close enough that a slowly growing
  spill could reach it) is held to the stricter ``gating.warm_threshold``: a change well inside what
  flicker can do already sends it to the model, so a spill growing under the plain threshold is not
  held back until the refresh, while a still scene within sensor noise keeps reusing its result.

Otherwise the frame is "reused": the worker emits the reference's classification with this
frame's ids and times and ``inferred: false``.

>>> import numpy as np
>>> gate = ChangeGate(GateParams(refresh_s=10.0, threshold=0.3, min_blocks=1))
>>> img = np.full((90, 120, 3), 100, np.uint8); img[:45] = 160
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> gate.decide("cam", gate.thumbnail(img), t0, None).classify
True
>>> gate.commit("cam", gate.thumbnail(img), t0, None, result="r0", hot=False)
False
>>> brighter = np.clip(img.astype(int) * 1.1 + 8, 0, 255).astype(np.uint8)  # auto-exposure
>>> gate.decide("cam", gate.thumbnail(brighter), t0 + timedelta(seconds=1), None).reason
'unchanged'
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta  # noqa: F401 - UTC: the module doctest
from typing import Any, Generic, TypeVar

import cv2
import numpy as np

THUMB = 32  # thumbnail side (pixels)
BLOCK = 4  # block side in thumbnail pixels: an 8 x 8 grid of blocks
MIN_SCALE = 4.0  # floor of the contrast scale (gray levels): a flat frame does not amplify noise

R = TypeVar("R")


@dataclass(frozen=True)
class GateParams:
    refresh_s: float = 10.0
    threshold: float = 0.3
    min_blocks: int = 1
    max_cameras: int = 100_000
    hot_hold_s: float = 5.0
    warm_threshold: float = 0.0  # block threshold of a warm camera (0: a warm camera is classified on every frame)
    max_gap_s: float = 30.0  # a longer gap between two inferred frames restarts a camera's settle streak (aggregator.max_gap_s)


@dataclass(frozen=True)
class Decision:
    classify: bool
    reason: str  # first | epoch | older | refresh | hot | changed | warm | settled | unchanged | off
    changed_blocks: int = 0
    peak: float = 0.0  # largest block difference seen (contrast units)
    warm_blocks: int = 0  # blocks at or above the warm threshold (all of them when it is 0)


@dataclass
class Reference(Generic[R]):
    thumb: np.ndarray
    capture_time: datetime
    epoch: int | None
    result: R
    hot: bool
    hot_until: datetime | None = None  # still hot until then (capture time): the hold after a hot score
    warm: bool = False  # the score was warm (or hot): the next frames are held to the warm threshold
    warm_until: datetime | None = None  # the same hold for warm scores
    streak: int = 0  # inferred frames in a row (within max_gap_s of each other) at or above the settle level
    settled: bool = False  # this result is at the settle level and the streak reached the camera's settle count

    def is_hot(self, capture_time: datetime) -> bool:
        return self.hot or (self.hot_until is not None and capture_time < self.hot_until)

    def is_warm(self, capture_time: datetime) -> bool:
        return self.warm or (self.warm_until is not None and capture_time < self.warm_until)


def thumbnail_of_jpeg(jpeg: bytes) -> np.ndarray:
    """The thumbnail straight from the JPEG: a reduced grayscale decode (the DC coefficients at 1/8
    scale for a 480 x 360 frame), cheaper than the colour decode the model needs, which a frame
    that is reused never gets."""
    from spillwatch.model import decode_jpeg_gray

    return thumbnail(decode_jpeg_gray(jpeg, THUMB))


def thumbnail(image_bgr: np.ndarray) -> np.ndarray:
    """``THUMB`` x ``THUMB`` float32 grayscale, normalised: zero mean, unit mean absolute deviation."""
    gray = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    t = cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    t -= t.mean()
    scale = max(float(np.abs(t).mean()), MIN_SCALE)
    return t / scale


def block_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Absolute difference of the block means (``BLOCK`` x ``BLOCK`` thumbnail pixels each, a grid
    of THUMB/BLOCK squared). Averaging the signed difference before taking its size lets per-pixel
    noise cancel out (a mean of absolute differences would keep it), while a stain, a puddle or an
    object shifts its block one way."""
    n = THUMB // BLOCK
    return np.abs((a - b).reshape(n, BLOCK, n, BLOCK).mean(axis=(1, 3)))


class ChangeGate(Generic[R]):
    """Per-camera references (bounded: the least recently seen camera is forgotten first)."""

    def __init__(self, params: GateParams) -> None:
        self.params = params
        self._refs: OrderedDict[str, Reference[R]] = OrderedDict()

    thumbnail = staticmethod(thumbnail)

    def reference(self, camera: str) -> Reference[R] | None:
        return self._refs.get(camera)

    def decide(self, camera: str, thumb: np.ndarray, capture_time: datetime, epoch: int | None) -> Decision:
        ref = self._refs.get(camera)
        if ref is None:
            return Decision(True, "first")
        self._refs.move_to_end(camera)
        return self.judge(ref, thumb, capture_time, epoch)

    def judge(self, ref: Reference[Any], thumb: np.ndarray, capture_time: datetime, epoch: int | None) -> Decision:
        """The decision for a frame against ``ref`` (the camera's reference, or a frame of the same
        batch that is about to be classified)."""
        if epoch != ref.epoch:
            return Decision(True, "epoch")
        if capture_time < ref.capture_time:
            return Decision(True, "older")
        if capture_time - ref.capture_time >= timedelta(seconds=self.params.refresh_s):
            return Decision(True, "refresh")
        hot = ref.is_hot(capture_time)
        if hot and not ref.settled:
            return Decision(True, "hot")
        blocks = block_difference(thumb, ref.thumb)
        changed = int((blocks >= self.params.threshold).sum())
        peak = float(blocks.max())
        warm = int((blocks >= self.params.warm_threshold).sum())
        if hot:  # settled: a change beyond the warm threshold is judged afresh
            if warm >= self.params.min_blocks:
                return Decision(True, "hot", changed, peak, warm)
            return Decision(False, "settled", changed, peak, warm)
        if changed >= self.params.min_blocks:
            return Decision(True, "changed", changed, peak, warm)
        if ref.is_warm(capture_time) and warm >= self.params.min_blocks:
            return Decision(True, "warm", changed, peak, warm)
        return Decision(False, "unchanged", changed, peak, warm)

    def warm_change(self, d: Decision) -> bool:
        """Whether a frame judged ``d`` against a reference that was not known to be warm changed
        enough for a warm one (the classifier re-checks a batch's frames once their source's score is in)."""
        return d.warm_blocks >= self.params.min_blocks

    def commit(self, camera: str, thumb: np.ndarray, capture_time: datetime, epoch: int | None, *, result: R, hot: bool,
               warm: bool = False, high: bool = False, settle_after: int = 0) -> bool:
        """The frame the model just classified becomes the camera's reference (``hot``: its score
        reached the hot level; ``warm``: the warm level; ``high``: the settle level, and the camera
        settles once ``settle_after`` such frames came in a row, 0: never). Returns whether the
        camera is hot now (its score, or the hold after its last hot score). Warm scores are held
        the same way."""
        prev = self._refs.get(camera)
        held = prev if prev is not None and prev.epoch == epoch else None  # holds carry over within an epoch
        hold = timedelta(seconds=self.params.hot_hold_s)
        hot_until = capture_time + hold if hot else (held.hot_until if held else None)
        warm = warm or hot
        warm_until = capture_time + hold if warm else (held.warm_until if held else None)
        in_row = held is not None and timedelta(0) <= capture_time - held.capture_time <= timedelta(seconds=self.params.max_gap_s)
        streak = ((held.streak if held is not None and in_row else 0) + 1) if high else 0
        settled = hot and high and 0 < settle_after <= streak
        ref = Reference(thumb, capture_time, epoch, result, hot, hot_until, warm, warm_until, streak, settled)
        self._refs[camera] = ref
        self._refs.move_to_end(camera)
        while len(self._refs) > self.params.max_cameras:
            self._refs.popitem(last=False)
        return ref.is_hot(capture_time)

    def __len__(self) -> int:
        return len(self._refs)


def log_odds_below(p: float, margin: float) -> float:
    """The probability ``margin`` log-odds below ``p`` (the hot level below a camera's threshold).

    >>> round(log_odds_below(0.5, math.log(3)), 3)
    0.25
    """
    if p <= 0.0 or p >= 1.0:
        return p
    return 1.0 / (1.0 + math.exp(margin - math.log(p / (1.0 - p))))


def params_from(settings: Any) -> GateParams | None:
    """GateParams from ``settings.gating`` (None when gating is off)."""
    g = settings.gating
    if not g.enabled:
        return None
    return GateParams(refresh_s=g.refresh_s, threshold=g.threshold, min_blocks=g.min_blocks, max_cameras=g.max_cameras,
                      hot_hold_s=g.hot_hold_s, warm_threshold=g.warm_threshold, max_gap_s=settings.aggregator.max_gap_s)


def log_odds_above(p: float, margin: float) -> float:
    """The probability ``margin`` log-odds above ``p`` (the settle level above a camera's threshold).

    >>> round(log_odds_above(0.25, math.log(3)), 3)
    0.5
    """
    return log_odds_below(p, -margin)
