"""Floor materials rendered top-down in the floor plane (float32 BGR albedo in [0, 1]).

Each floor also carries a gloss (0 = matte carpet, 1 = polished marble) that scales the blurred
reflections and glare the scene adds later. Floor markings (painted lines) are drawn here too, since
they live in the floor plane and are warped with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.synth import noise
from training.synth.fastops import rep3, tint3

FLOORS: tuple[str, ...] = (
    "sealed_concrete",
    "bare_concrete",
    "epoxy",
    "tiles",
    "marble",
    "metal_grating",
    "antislip_plate",
    "carpet",
    "wood",
    "vinyl",
    "desk",
)
# Marble, tiles, vinyl and wood are the office-like floors of the real data: weight them up.
FLOOR_WEIGHTS = np.array([1.0, 0.8, 1.0, 1.3, 1.8, 0.5, 0.5, 1.0, 1.3, 1.0, 0.8])


@dataclass
class Floor:
    name: str
    albedo: np.ndarray  # TxTx3 float32
    gloss: float
    porous: float  # how much a wet floor darkens (carpet, bare concrete, wood soak up liquid)


def _tint(rng: np.random.Generator, base: float, spread: float = 0.04) -> np.ndarray:
    return np.clip(base + rng.normal(0, spread, 3), 0.02, 1.0).astype(np.float32)


def _apply(base_bgr: np.ndarray, lum: np.ndarray) -> np.ndarray:
    return np.clip(tint3(rep3(lum), base_bgr), 0, 1)


def _concrete(rng, T, sealed: bool) -> Floor:
    base = _tint(rng, rng.uniform(0.45, 0.72), 0.025)
    lum = 1 + (0.06 if sealed else 0.12) * noise.fbm(rng, T, T, 5, 4) + (0.03 if sealed else 0.07) * noise.white(rng, T, T)
    if not sealed:  # blotches from wear
        lum += 0.08 * np.clip(noise.smooth(rng, T, T, 8), 0, None) * (rng.random() < 0.7)
    img = _apply(base, lum)
    if rng.random() < 0.6:  # saw-cut joints
        step = int(T / rng.uniform(1.5, 4))
        for k in range(step, T, step):
            cv2.line(img, (k, 0), (k, T), (0.25, 0.25, 0.25), 1)
            cv2.line(img, (0, k), (T, k), (0.25, 0.25, 0.25), 1)
    return Floor("sealed_concrete" if sealed else "bare_concrete", img, rng.uniform(0.3, 0.6) if sealed else rng.uniform(0.0, 0.08), 0.2 if sealed else 0.6)


_EPOXY = [(0.55, 0.56, 0.55), (0.45, 0.55, 0.45), (0.62, 0.52, 0.42), (0.32, 0.36, 0.55), (0.62, 0.62, 0.62), (0.35, 0.5, 0.35)]


def _epoxy(rng, T) -> Floor:
    base = np.array(_EPOXY[rng.integers(len(_EPOXY))], np.float32) * rng.uniform(0.85, 1.1)
    lum = 1 + 0.03 * noise.fbm(rng, T, T, 6, 3) + 0.015 * noise.white(rng, T, T)
    return Floor("epoxy", _apply(base, lum), rng.uniform(0.5, 0.85), 0.05)


def _tiles(rng, T) -> Floor:
    s = max(8, int(T / rng.uniform(4, 12)))
    n = T // s + 2
    tone = 1 + rng.normal(0, 0.05, (n, n)).astype(np.float32)
    checker = rng.random() < 0.25
    base = _tint(rng, rng.uniform(0.5, 0.85), 0.05)
    base2 = _tint(rng, rng.uniform(0.2, 0.6), 0.05)
    yy, xx = np.mgrid[0:T, 0:T]
    ty, tx = yy // s, xx // s
    lum = tone[ty, tx] + 0.04 * noise.fbm(rng, T, T, 20, 2)
    img = _apply(base, lum)
    if checker:
        sel = ((ty + tx) % 2 == 1)
        img[sel] = _apply(base2, lum)[sel]
    g = max(1, int(s * rng.uniform(0.03, 0.08)))
    grout = (yy % s < g) | (xx % s < g)
    img[grout] = _tint(rng, rng.uniform(0.3, 0.75), 0.03)
    return Floor("tiles", img, rng.uniform(0.3, 0.75), 0.05)


def _marble(rng, T) -> Floor:
    s = max(16, int(T / rng.uniform(2, 5)))
    base = np.array([0.8, 0.82, 0.84], np.float32) * rng.uniform(0.75, 1.05) + rng.normal(0, 0.03, 3).astype(np.float32)
    h = T // 2  # veins are computed at half resolution (they are soft anyway) and upsampled
    yy, xx = np.mgrid[0:h, 0:h].astype(np.float32) * 2
    warp = noise.fbm(rng, h, h, 6, 4)
    veins = np.zeros((h, h), np.float32)
    for _ in range(2):
        a = rng.uniform(0, np.pi)
        f = rng.uniform(3, 9) / T * 2 * np.pi
        v = np.sin((xx * np.cos(a) + yy * np.sin(a)) * f + rng.uniform(2, 5) * warp)
        veins = np.maximum(veins, np.exp(-np.abs(v) * rng.uniform(8, 25)))
    lum_h = 1 + 0.05 * noise.fbm(rng, h, h, 4, 2) - rng.uniform(0.1, 0.3) * veins
    lum = cv2.resize(lum_h, (T, T), interpolation=cv2.INTER_LINEAR) + 0.01 * noise.white(rng, T, T)
    n = T // s + 2
    tone = 1 + rng.normal(0, 0.04, (n, n)).astype(np.float32)
    idx = np.arange(T) // s
    lum *= tone[idx[:, None], idx[None, :]]
    img = _apply(base, lum)
    img[::s] *= 0.8
    img[:, ::s] *= 0.8
    return Floor("marble", img, rng.uniform(0.55, 0.95), 0.0)


def _grating(rng, T) -> Floor:
    p = max(5, int(T / rng.uniform(25, 50)))
    q = p * int(rng.integers(2, 5))
    img = np.full((T, T, 3), rng.uniform(0.04, 0.12), np.float32)
    bar = _tint(rng, rng.uniform(0.4, 0.6), 0.02)
    lum = 1 + 0.1 * noise.fbm(rng, T, T, 8, 3)
    yy, xx = np.mgrid[0:T, 0:T]
    sel = (xx % p < max(1, p // 3)) | (yy % q < max(1, p // 3))
    img[sel] = _apply(bar, lum)[sel]
    return Floor("metal_grating", img, rng.uniform(0.15, 0.35), 0.0)


def _antislip(rng, T) -> Floor:
    base = _tint(rng, rng.uniform(0.45, 0.65), 0.015)
    lum = 1 + 0.06 * noise.fbm(rng, T, T, 6, 3)
    h = np.zeros((T, T), np.float32)
    p = max(6, int(T / rng.uniform(18, 35)))
    for j, y in enumerate(range(0, T + p, p)):
        for x in range(0, T + p, p):
            ang = 45 if ((x // p) + j) % 2 == 0 else -45
            cv2.ellipse(h, (x + (p // 2) * (j % 2), y), (max(2, p // 2), max(1, p // 7)), ang, 0, 360, 1.0, -1)
    shade = cv2.Sobel(h, cv2.CV_32F, 1, 1, ksize=3) * 0.15 + h * 0.08
    return Floor("antislip_plate", _apply(base, lum + shade), rng.uniform(0.25, 0.5), 0.0)


_CARPET = [(0.35, 0.33, 0.32), (0.45, 0.32, 0.25), (0.22, 0.28, 0.35), (0.2, 0.18, 0.4), (0.3, 0.35, 0.3), (0.5, 0.5, 0.5)]


def _carpet(rng, T) -> Floor:
    base = np.array(_CARPET[rng.integers(len(_CARPET))], np.float32) * rng.uniform(0.8, 1.3)
    lum = 1 + 0.18 * noise.white(rng, T, T) + 0.08 * noise.fbm(rng, T, T, 12, 3)
    if rng.random() < 0.4:  # carpet tiles with alternating pile direction
        s = max(10, int(T / rng.uniform(4, 8)))
        yy, xx = np.mgrid[0:T, 0:T]
        lum *= np.where(((yy // s) + (xx // s)) % 2 == 0, 1.0, 0.9).astype(np.float32)
    return Floor("carpet", _apply(base, lum), rng.uniform(0.0, 0.05), 0.8)


_WOOD = [(0.25, 0.4, 0.6), (0.3, 0.5, 0.7), (0.2, 0.3, 0.45), (0.45, 0.6, 0.75), (0.15, 0.25, 0.4)]


def _wood(rng, T) -> Floor:
    base = np.array(_WOOD[rng.integers(len(_WOOD))], np.float32) * rng.uniform(0.85, 1.15)
    w = max(6, int(T / rng.uniform(5, 14)))
    n = T // w + 2
    yy, xx = np.mgrid[0:T, 0:T]
    plank = xx // w
    off = rng.integers(0, T, n)
    length = int(T / rng.uniform(1, 3))
    tone = 1 + rng.normal(0, 0.08, (n, 8)).astype(np.float32)
    seg = ((yy + off[plank]) // length) % 8
    # grain runs along y: take noise varying in x strongly, along y weakly
    g = cv2.resize(rng.standard_normal((6, T)).astype(np.float32), (T, T), interpolation=cv2.INTER_CUBIC)
    lum = tone[plank, seg] + 0.06 * g + 0.04 * np.sin(xx * rng.uniform(0.3, 0.8) + 3 * g) + 0.02 * noise.white(rng, T, T)
    img = _apply(base, lum)
    gap = (xx % w == 0) | (((yy + off[plank]) % length) == 0)
    img[gap] *= 0.6
    return Floor("wood", img, rng.uniform(0.2, 0.6), 0.4)


def _vinyl(rng, T) -> Floor:
    base = _tint(rng, rng.uniform(0.55, 0.85), 0.05)
    lum = 1 + 0.03 * noise.fbm(rng, T, T, 4, 2)
    img = _apply(base, lum)
    speck = noise.white(rng, T, T)
    img[speck > 2.0] *= rng.uniform(0.4, 0.8)
    img[speck < -2.2] = np.clip(img[speck < -2.2] * 1.3, 0, 1)
    return Floor("vinyl", img, rng.uniform(0.3, 0.65), 0.05)


_DESK = [(0.2, 0.45, 0.75), (0.25, 0.5, 0.8), (0.15, 0.3, 0.55), (0.55, 0.6, 0.62), (0.12, 0.14, 0.16)]


def _desk(rng, T) -> Floor:
    """A varnished office desk / table top (spills on tables are common in offices): smooth grain, glossy."""
    base = np.array(_DESK[rng.integers(len(_DESK))], np.float32) * rng.uniform(0.85, 1.15)
    g = cv2.resize(rng.standard_normal((4, max(8, T // 6))).astype(np.float32), (T, T), interpolation=cv2.INTER_CUBIC)
    lum = 1 + 0.05 * g + 0.03 * noise.fbm(rng, T, T, 3, 2)
    img = _apply(base, lum)
    if rng.random() < 0.5:
        img = np.ascontiguousarray(np.rot90(img))
    return Floor("desk", img, rng.uniform(0.55, 0.9), 0.0)


def make_floor(rng: np.random.Generator, T: int, name: str | None = None) -> Floor:
    if name is None:
        name = FLOORS[int(rng.choice(len(FLOORS), p=FLOOR_WEIGHTS / FLOOR_WEIGHTS.sum()))]
    if name == "sealed_concrete":
        return _concrete(rng, T, True)
    if name == "bare_concrete":
        return _concrete(rng, T, False)
    makers = {"epoxy": _epoxy, "tiles": _tiles, "marble": _marble, "metal_grating": _grating,
              "antislip_plate": _antislip, "carpet": _carpet, "wood": _wood, "vinyl": _vinyl, "desk": _desk}
    if name not in makers:
        raise ValueError(f"unknown floor {name!r}; known: {FLOORS}")
    return makers[name](rng, T)


def draw_markings(rng: np.random.Generator, img: np.ndarray) -> None:
    """Painted safety lines / hatching / arrows in the floor plane (in place)."""
    T = img.shape[0]
    colours = [(0.1, 0.75, 0.9), (0.92, 0.92, 0.92), (0.2, 0.25, 0.8), (0.3, 0.6, 0.2)]
    col = tuple(float(c) * rng.uniform(0.8, 1.05) for c in colours[rng.integers(len(colours))])
    th = max(2, int(T * rng.uniform(0.015, 0.04)))
    kind = rng.integers(3)
    if kind == 0:  # one or two parallel lines (lane)
        x = int(rng.uniform(0.1, 0.9) * T)
        gap = int(T * rng.uniform(0.2, 0.5))
        vertical = rng.random() < 0.5
        for xi in (x, x + gap) if rng.random() < 0.6 else (x,):
            p1, p2 = ((xi, 0), (xi, T)) if vertical else ((0, xi), (T, xi))
            cv2.line(img, p1, p2, col, th)
    elif kind == 1:  # hatched zone
        x0, y0 = (int(v) for v in rng.uniform(0, 0.7, 2) * T)
        w, h = (int(v) for v in rng.uniform(0.15, 0.35, 2) * T)
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), col, th)
        sub = img[y0 : y0 + h, x0 : x0 + w]
        for k in range(-h, w, max(3 * th, 6)):
            cv2.line(sub, (k, h), (k + h, 0), (0.05, 0.05, 0.05) if rng.random() < 0.5 else col, th)
    else:  # arrow
        cx, cy = (int(v) for v in rng.uniform(0.2, 0.8, 2) * T)
        L = int(T * rng.uniform(0.1, 0.25))
        cv2.arrowedLine(img, (cx, cy + L), (cx, cy - L), col, th, tipLength=0.4)
