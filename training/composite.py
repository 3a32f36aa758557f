"""Real liquids on new floors: a spill cut out of a real frame along its polygons and pasted onto a
clean floor or room photo (another place, another floor, another light).

Pure numpy/OpenCV, seeded, no I/O: ``composite_spill(rng, source, source_mask, target)`` returns the
new frame and the exact mask of the pixels the liquid was drawn on.

How a pasted liquid is made to belong to its new floor:
- geometry: the cut-out is scaled to the target, squashed vertically and given a random perspective
  (a floor seen at an angle), mirrored at random, and placed in the lower part of the frame (where
  the floor is in a room photo or CCTV view);
- appearance: a mix of the liquid's own colour (opaque liquids: milk, juice, oil) and its *change*
  against the floor around it in the source frame (a thin film darkens or brightens what lies under
  it), so a water film on a dark tile stays a darker film on a light floor;
- reflections: the room above the spill, mirrored and blurred, shows in the liquid (wet floors mirror
  windows and lamps), plus a soft specular glint;
- blending: a feathered edge (liquid edges are soft at CCTV resolution).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CompositeConfig:
    min_width: float = 0.2           # pasted liquid width, fraction of the target width
    max_width: float = 0.55
    squash: tuple[float, float] = (0.45, 1.0)   # vertical scale (floor foreshortening)
    perspective: float = 0.15        # corner jitter of the cut-out, fraction of its size
    top: float = 0.4                 # the liquid's centre lies below this fraction of the height
    own_colour: tuple[float, float] = (0.15, 0.85)  # share of the liquid's own colour vs its transferred change
    reflection: tuple[float, float] = (0.0, 0.35)
    feather: float = 0.012           # edge blur, fraction of the target width
    min_pixels: int = 30             # smaller cut-outs are rejected


def liquid_cutout(image: np.ndarray, mask: np.ndarray, pad: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(liquid BGR float32 crop, its {0,1} float32 mask, the floor colour around it) or None when the
    mask holds too few pixels. The floor colour is the median of a ring around the liquid."""
    m = mask.astype(bool)
    if int(m.sum()) < 30:
        return None
    ys, xs = np.nonzero(m)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    ph, pw = int((y1 - y0) * pad) + 2, int((x1 - x0) * pad) + 2
    y0, y1 = max(0, y0 - ph), min(m.shape[0], y1 + ph)
    x0, x1 = max(0, x0 - pw), min(m.shape[1], x1 + pw)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    cm = m[y0:y1, x0:x1]
    k = max(3, 2 * (max(cm.shape) // 12) + 1)
    ring = cv2.dilate(cm.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & ~cm
    around = crop[ring] if ring.any() else crop[~cm] if (~cm).any() else crop.reshape(-1, 3)
    floor = np.median(around, axis=0).astype(np.float32)
    return crop, cm.astype(np.float32), floor


def _placement(rng: np.random.Generator, src_wh: tuple[int, int], dst_wh: tuple[int, int], cfg: CompositeConfig) -> np.ndarray:
    """Homography from the cut-out to the target: scale, squash, perspective, mirror, position."""
    sw, sh = src_wh
    W, H = dst_wh
    width = W * rng.uniform(cfg.min_width, cfg.max_width)
    height = width * (sh / max(sw, 1)) * rng.uniform(*cfg.squash)
    height = min(height, H * 0.6)
    cx = rng.uniform(width / 2, max(width / 2 + 1, W - width / 2))
    cy = rng.uniform(max(H * cfg.top, height / 2), max(H * cfg.top + 1, H - height / 3))
    j = cfg.perspective
    dst = np.array([[-width / 2, -height / 2], [width / 2, -height / 2], [width / 2, height / 2], [-width / 2, height / 2]], np.float32)
    dst += (rng.uniform(-j, j, size=(4, 2)) * np.array([width, height])).astype(np.float32)
    # a floor seen at an angle: the far edge is narrower than the near one
    far = rng.uniform(0.0, 0.25)
    dst[0, 0] += far * width / 2
    dst[1, 0] -= far * width / 2
    dst += np.array([cx, cy], np.float32)
    src = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], np.float32)
    if rng.random() < 0.5:
        src = src[[1, 0, 3, 2]]
    return cv2.getPerspectiveTransform(src, dst)


def composite_spill(rng: np.random.Generator, source: np.ndarray, source_mask: np.ndarray, target: np.ndarray,
                    cfg: CompositeConfig = CompositeConfig()) -> tuple[np.ndarray, np.ndarray] | None:
    """Paste the liquid of ``source`` (BGR uint8, {0,1} ``source_mask`` of the same size) onto the clean
    ``target`` (BGR uint8). Returns (frame BGR uint8 of the target's size, {0,1} uint8 mask of the
    pasted liquid) or None when the source holds no usable liquid or it would cover too few pixels."""
    cut = liquid_cutout(source, source_mask)
    if cut is None:
        return None
    crop, cmask, floor_src = cut
    H, W = target.shape[:2]
    M = _placement(rng, (crop.shape[1], crop.shape[0]), (W, H), cfg)
    liq = cv2.warpPerspective(crop, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpPerspective(cmask, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    hard = (a >= 0.5).astype(np.uint8)
    if int(hard.sum()) < cfg.min_pixels:
        return None
    fs = max(0.5, cfg.feather * W * rng.uniform(0.5, 1.5))
    alpha = np.clip(cv2.GaussianBlur(a, (0, 0), fs), 0.0, 1.0)
    alpha[alpha < 0.004] = 0.0  # the feather's far tail would only re-round untouched pixels
    alpha = alpha[..., None]
    tgt = target.astype(np.float32)

    # appearance: own colour vs transferred change (multiplicative, so it follows the new floor's tone)
    own = rng.uniform(*cfg.own_colour)
    ratio = np.clip((liq + 8.0) / (floor_src + 8.0), 0.25, 3.0)
    transferred = tgt * ratio
    tint = liq * own + transferred * (1 - own)

    # reflections of the room above (mirrored about the liquid's top edge) and a glint
    r = rng.uniform(*cfg.reflection)
    if r > 0.01:
        ys = np.nonzero(hard.any(axis=1))[0]
        top = int(ys.min())
        yy = np.arange(H, dtype=np.float32)
        src_y = np.clip(2 * top - yy, 0, H - 1)
        map_y = np.repeat(src_y[:, None], W, axis=1).astype(np.float32)
        map_x = np.repeat(np.arange(W, dtype=np.float32)[None, :], H, axis=0)
        mirror = cv2.remap(tgt, map_x, map_y, cv2.INTER_LINEAR)
        mirror = cv2.GaussianBlur(mirror, (0, 0), max(0.5, W * rng.uniform(0.002, 0.012)))
        tint = tint * (1 - r) + mirror * r
    if rng.random() < 0.35:
        glint = np.zeros((H, W), np.float32)
        ys, xs = np.nonzero(hard)
        k = int(rng.integers(len(ys)))
        axes = (max(1, int(W * rng.uniform(0.01, 0.04))), max(1, int(H * rng.uniform(0.005, 0.02))))
        cv2.ellipse(glint, (int(xs[k]), int(ys[k])), axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(40, 110)), -1)
        glint = cv2.GaussianBlur(glint, (0, 0), max(0.5, W * 0.006)) * hard
        tint = tint + glint[..., None]
    out = tgt * (1 - alpha) + np.clip(tint, 0, 255) * alpha
    frame = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    untouched = alpha[..., 0] == 0
    frame[untouched] = target[untouched]
    return frame, hard
