"""Simulated camera scenes for ``spillwatch bench pipeline --scene static|busy|mixed``.

* ``busy``: today's bench: every camera plays a bundled clip (people, carts, glare move in every
  frame), spill cameras the spill clip, the others the clean clip.
* ``static``: a still scene per camera, apart from sensor noise (Gaussian, per pixel), light
  flicker and auto-exposure (a global gain and offset per frame) and JPEG re-encoding. Spill
  cameras hold the spill clip's last clean frame, then at the clip's onset play its growth frames
  and hold the grown spill.
* ``mixed``: even cameras static, odd cameras busy (spill cameras keep their ratio).

Frames are pre-encoded (a pool of noisy variants per still image) so the publisher costs the
workers no CPU during the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Scene = Literal["static", "busy", "mixed"]
SCENES: tuple[str, ...] = ("static", "busy", "mixed")
VARIANTS = 16  # noisy encodings per still image
NOISE_SIGMA = 3.0  # gray levels
FLICKER_GAIN = 0.05  # +-5 % gain
FLICKER_OFFSET = 6.0  # +- gray levels


def noisy_variants(image_bgr: np.ndarray, n: int, seed: int, quality: int = 85) -> list[bytes]:
    """``n`` JPEGs of ``image_bgr`` with independent sensor noise and a global gain/offset each."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    base = image_bgr.astype(np.float32)
    for _ in range(n):
        gain = 1.0 + rng.uniform(-FLICKER_GAIN, FLICKER_GAIN)
        offset = rng.uniform(-FLICKER_OFFSET, FLICKER_OFFSET)
        img = base * gain + offset + rng.normal(0.0, NOISE_SIGMA, base.shape).astype(np.float32)
        ok, buf = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(buf.tobytes())
    return out


def decode(jpeg: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "undecodable JPEG"
    return img


@dataclass
class StaticClips:
    """Pre-encoded frames of the static scene, built from the bundled clips' frames."""

    clean: list[list[bytes]]  # per still scene, its noisy variants
    before: list[bytes]  # spill camera before the onset
    growth: list[bytes]  # the spill clip's growth frames (one noisy encoding each), at clip fps
    after: list[bytes]  # the grown spill, held
    fps: float
    onset_s: float

    def frame(self, camera: int, spill: bool, video_t: float, tick: int) -> bytes:
        v = (tick + camera * 7) % VARIANTS
        if not spill:
            stills = self.clean[camera % len(self.clean)]
            return stills[v % len(stills)]
        if video_t < self.onset_s:
            return self.before[v % len(self.before)]
        k = int((video_t - self.onset_s) * self.fps)
        if k < len(self.growth):
            return self.growth[k]
        return self.after[v % len(self.after)]


def build_static(spill_jpegs: list[bytes], clean_jpegs: list[bytes], *, fps: float, onset_s: float, grow_s: float,
                 stills: tuple[int, ...] = (0, 45, 90)) -> StaticClips:
    """From the clips' frames (already downsized and encoded like a producer does)."""
    first = int(round(onset_s * fps))
    grown = min(len(spill_jpegs) - 1, first + int(round((grow_s + 1.0) * fps)))
    clean = [noisy_variants(decode(clean_jpegs[i % len(clean_jpegs)]), VARIANTS, seed=100 + i) for i in stills]
    before = noisy_variants(decode(spill_jpegs[max(0, first - 1)]), VARIANTS, seed=7)
    growth = [noisy_variants(decode(spill_jpegs[i]), 1, seed=1000 + i)[0] for i in range(first, grown)]
    after = noisy_variants(decode(spill_jpegs[grown]), VARIANTS, seed=9)
    return StaticClips(clean, before, growth, after, fps, onset_s)


FrameSource = Callable[[int, bool, float, int], bytes]


def frame_source(scene: str | None, static: StaticClips | None, spill: ClipLike, clean: ClipLike) -> FrameSource:
    """``(camera index, spill camera?, video time s, tick) -> JPEG`` for the scene."""

    def busy(camera: int, is_spill: bool, video_t: float, tick: int) -> bytes:
        clip = spill if is_spill else clean
        return clip.jpegs[int(video_t * clip.fps) % len(clip.jpegs)]

    if scene in (None, "busy"):
        return busy
    assert static is not None
    if scene == "static":
        return static.frame

    def mixed(camera: int, is_spill: bool, video_t: float, tick: int) -> bytes:
        return static.frame(camera, is_spill, video_t, tick) if camera % 2 == 0 else busy(camera, is_spill, video_t, tick)

    return mixed


class ClipLike(Protocol):  # the shape of processors.bench.Clip
    jpegs: list[bytes]
    fps: float
