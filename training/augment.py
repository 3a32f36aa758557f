"""Seeded image + mask augmentation (numpy/OpenCV, no torch).

Geometry (crop/scale, perspective, flips) is one homography applied to image and mask together and
ends at the model's square input (the runtime squashes the whole frame to S x S, so the default
view is the full frame). Photometry imitates CCTV: exposure, gamma, white balance, saturation,
infrared greyscale, blur, sensor noise, low resolution and JPEG artefacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class AugmentConfig:
    strength: float = 1.0          # 0 disables everything except the resize
    max_crop: float = 0.25         # fraction of width/height that may be cropped away
    perspective: float = 0.08      # corner jitter, fraction of the side
    hflip: float = 0.5
    vflip: float = 0.05
    grey: float = 0.12             # night infrared
    blur: float = 0.3
    noise: float = 0.4
    jpeg: float = 0.5
    lowres: float = 0.2
    closeup: float = 0.0           # share of close-up views: a small part of the frame fills the input
    closeup_side: tuple[float, float] = (0.3, 0.6)  # the close-up's side, fraction of the frame's
    dark_closeup: float = 0.0      # of the close-ups of a known-clean frame, the share centred on a dark spot
    dark_closeup_side: tuple[float, float] = (0.12, 0.35)  # their side (a knot or a stain magnified)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """What the runtime does: plain resize of the whole frame to size x size (INTER_AREA)."""
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def dark_spot(rng: np.random.Generator, img: np.ndarray) -> tuple[float, float]:
    """A point (x, y) of ``img`` drawn where it is darker than its surroundings (a knot, a stain,
    a seam, a shadowed motif: the dry look-alikes of a puddle), weighted by how much darker."""
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32) if img.ndim == 3 else img.astype(np.float32)
    h, w = grey.shape
    around = cv2.GaussianBlur(grey, (0, 0), 0.12 * min(h, w))
    spot = cv2.GaussianBlur(grey, (0, 0), max(1.0, 0.02 * min(h, w)))
    step = max(1, min(h, w) // 48)
    weight = np.clip(around - spot, 0, None)[::step, ::step] ** 2
    total = float(weight.sum())
    if total <= 0:
        return float(rng.uniform(0, w)), float(rng.uniform(0, h))
    j = int(rng.choice(weight.size, p=(weight / total).ravel()))
    yy, xx = divmod(j, weight.shape[1])
    return float(xx * step), float(yy * step)


def _closeup_window(rng: np.random.Generator, img: np.ndarray, cfg: AugmentConfig,
                    mask: np.ndarray | None, known_clean: bool) -> tuple[float, float, float, float]:
    """A close-up (x0, y0, cw, ch): around a labelled spill pixel when there is a mask with one;
    on a known-clean frame, with chance ``dark_closeup``, a tighter one around a dark spot
    (:func:`dark_spot`); else in the lower part of the frame (the floor of a CCTV view; the whole
    of a floor photo)."""
    h, w = img.shape[:2]
    if known_clean and cfg.dark_closeup > 0 and rng.random() < cfg.dark_closeup:
        side = rng.uniform(*cfg.dark_closeup_side)
        cw, ch = w * side, h * side
        px, py = dark_spot(rng, img)
        x0 = float(np.clip(px - cw * rng.uniform(0.3, 0.7), 0, w - cw))
        y0 = float(np.clip(py - ch * rng.uniform(0.3, 0.7), 0, h - ch))
        return x0, y0, cw, ch
    side = rng.uniform(*cfg.closeup_side)
    cw, ch = w * side, h * side
    ys, xs = np.nonzero(mask > 0.5) if mask is not None else (np.empty(0), np.empty(0))
    if mask is not None and len(xs):
        j = int(rng.integers(len(xs)))
        px, py = xs[j] * w / mask.shape[1], ys[j] * h / mask.shape[0]
        x0 = float(np.clip(px - cw * rng.uniform(0.2, 0.8), 0, w - cw))
        y0 = float(np.clip(py - ch * rng.uniform(0.2, 0.8), 0, h - ch))
    else:
        x0 = rng.uniform(0, w - cw)
        y0 = rng.uniform(min(0.35 * h, h - ch), h - ch)
    return x0, y0, cw, ch


def _homography(rng: np.random.Generator, img: np.ndarray, size: int, cfg: AugmentConfig, mild: bool,
                mask: np.ndarray | None = None, known_clean: bool = False) -> np.ndarray:
    h, w = img.shape[:2]
    if not mild and cfg.closeup > 0 and rng.random() < cfg.closeup * cfg.strength:
        x0, y0, cw, ch = _closeup_window(rng, img, cfg, mask, known_clean)
    else:
        crop = cfg.max_crop * (0.4 if mild else 1.0) * cfg.strength
        cw = w * (1 - rng.uniform(0, crop))
        ch = h * (1 - rng.uniform(0, crop))
        x0 = rng.uniform(0, w - cw)
        y0 = rng.uniform(0, h - ch)
    src = np.array([[x0, y0], [x0 + cw, y0], [x0 + cw, y0 + ch], [x0, y0 + ch]], dtype=np.float32)
    j = cfg.perspective * cfg.strength
    src += (rng.uniform(-j, j, size=(4, 2)) * np.array([cw, ch])).astype(np.float32)
    dst = np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=np.float32)
    if rng.random() < cfg.hflip:
        dst = dst[[1, 0, 3, 2]]
    if rng.random() < cfg.vflip * cfg.strength:
        dst = dst[[3, 2, 1, 0]]
    return cv2.getPerspectiveTransform(src, dst)


def geometric(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray | None, size: int,
              cfg: AugmentConfig, mild: bool = False, known_clean: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Warp image (and mask) to size x size. With strength 0: plain resize. A warp that loses most
    of a labelled spill falls back to the plain resize so the label stays true. ``known_clean``: the
    frame holds no spill, so any part of it may fill the view (``AugmentConfig.dark_closeup``)."""
    if cfg.strength <= 0:
        return resize_square(img, size), (None if mask is None else resize_square(mask.astype(np.float32), size))
    m = _homography(rng, img, size, cfg, mild, mask, known_clean)
    out = cv2.warpPerspective(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if mask is None:
        return out, None
    mk = cv2.warpPerspective(mask.astype(np.float32), m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    before = float(mask.mean())
    if before > 0 and float(mk.mean()) < 0.4 * before:
        # most of the spill left the view: keep the whole frame instead
        return resize_square(img, size), resize_square(mask.astype(np.float32), size)
    return out, mk


def photometric(rng: np.random.Generator, img: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """Colour/exposure/noise/blur/JPEG on a BGR uint8 image."""
    s = cfg.strength
    if s <= 0:
        return img
    x = img.astype(np.float32)
    # exposure and contrast
    alpha = rng.uniform(1 - 0.35 * s, 1 + 0.35 * s)
    beta = rng.uniform(-30 * s, 30 * s)
    mean = x.mean()
    x = (x - mean) * alpha + mean + beta
    # white balance
    x *= rng.uniform(1 - 0.12 * s, 1 + 0.12 * s, size=3).astype(np.float32)
    x = np.clip(x, 0, 255)
    # gamma
    g = float(np.exp(rng.uniform(-0.35 * s, 0.35 * s)))
    x = 255.0 * (x / 255.0) ** g
    out = x.astype(np.uint8)
    # saturation / greyscale (infrared night)
    if rng.random() < cfg.grey * s:
        grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        out = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    else:
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 1] *= rng.uniform(1 - 0.4 * s, 1 + 0.4 * s)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5 * s, 5 * s)) % 180
        out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
    # low resolution camera
    if rng.random() < cfg.lowres * s:
        h, w = out.shape[:2]
        f = rng.uniform(0.4, 0.75)
        small = cv2.resize(out, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # blur: focus or motion
    if rng.random() < cfg.blur * s:
        if rng.random() < 0.7:
            k = int(rng.choice([3, 5]))
            out = cv2.GaussianBlur(out, (k, k), 0)
        else:
            k = int(rng.integers(3, 8))
            kern = np.zeros((k, k), np.float32)
            kern[k // 2, :] = 1.0 / k
            rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
            kern = cast(npt.NDArray[np.float32], cv2.warpAffine(kern, rot, (k, k)))  # float32 in, float32 out
            kern /= max(kern.sum(), 1e-6)
            out = cv2.filter2D(out, -1, kern)
    # sensor noise
    if rng.random() < cfg.noise * s:
        sigma = rng.uniform(2, 10 * s)
        noise = rng.normal(0, sigma, size=out.shape).astype(np.float32)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    # JPEG artefacts
    if rng.random() < cfg.jpeg * s:
        q = int(rng.integers(25, 90))
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return out


def map_target(mask_sq: np.ndarray | None, grid: int, gain: float = 2.0) -> np.ndarray:
    """Per-cell spill target in [0, 1]: covered fraction x gain (a half-covered cell counts as spill)."""
    if mask_sq is None:
        return np.zeros((grid, grid), np.float32)
    frac = cv2.resize(mask_sq.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    return np.clip(frac * gain, 0.0, 1.0).astype(np.float32)


def augment(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray | None, size: int, grid: int,
            cfg: AugmentConfig, mild_geometry: bool = False, known_clean: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """BGR image (+ optional {0,1} mask) -> (RGB uint8 [S,S,3], map target [G,G])."""
    out, mk = geometric(rng, img, mask, size, cfg, mild=mild_geometry, known_clean=known_clean)
    out = photometric(rng, out, cfg)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB), map_target(mk, grid)
