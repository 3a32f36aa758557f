"""Things that must NOT be labelled spill: stains, pallets, cables, shadows, glare, people, signs.

Floor-plane distractors draw into the floor albedo before the perspective warp; image-space ones
draw into occluder / shadow layers of the scene. Wet-look stains are the honest hard case: they are
dark organic blobs like a pool, but matte (albedo only: no mirror reflection, no glints, no
refraction, no meniscus) with a blotchy texture and soft edges. That difference is learnable but
subtle, and on matte floors real wet patches look much like them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.synth import noise
from training.synth.fastops import rep3, tint3
from training.synth.liquids import shape_field


def draw_stain(rng: np.random.Generator, albedo: np.ndarray, centre: tuple[float, float], radius: float) -> None:
    """Dry dark stain (oil-soaked concrete, old tea mark, dirt) in the floor plane, in place."""
    T = albedo.shape[0]
    f = shape_field(rng, T, centre, radius, "pool")
    ys, xs = np.nonzero(f > -5)
    if len(ys) == 0:
        return
    pad = int(radius * 0.3) + 3
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, T)
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, T)
    sub = f[y0:y1, x0:x1]
    h, w = sub.shape
    soft = np.clip(sub * rng.uniform(1.5, 4.0), 0, 1)
    soft = noise.blur(soft, max(1.0, radius * 0.08))
    tex = 1 + 0.35 * noise.fbm(rng, h, w, max(h, w) / max(radius * 0.25, 2), 3)
    dark = rng.uniform(0.45, 0.85)
    k = rep3(np.clip(soft * (1 - dark) * tex, 0, 0.9))
    tint = np.array([0.85, 0.95, 1.0], np.float32) if rng.random() < 0.5 else np.ones(3, np.float32)
    albedo[y0:y1, x0:x1] *= 1 - tint3(k, 2 - tint)  # slightly brownish when tinted


def draw_pallet(rng: np.random.Generator, albedo: np.ndarray, centre: tuple[float, float], size: float) -> None:
    """A wooden pallet seen from above (slats), in the floor plane, in place."""
    cx, cy = centre
    w, h = size, size * rng.uniform(0.7, 1.0)
    col = np.array([0.35, 0.55, 0.7], np.float32) * rng.uniform(0.7, 1.1)
    n = int(rng.integers(5, 8))
    slat = h / (2 * n - 1)
    x0, x1 = int(cx - w / 2), int(cx + w / 2)
    for i in range(n):
        y0 = int(cy - h / 2 + 2 * i * slat)
        c = tuple(float(v) for v in col * rng.uniform(0.85, 1.1))
        cv2.rectangle(albedo, (x0, y0), (x1, int(y0 + slat)), c, -1)
        cv2.rectangle(albedo, (x0, int(y0 + slat)), (x1, int(y0 + 2 * slat)), (0.08, 0.1, 0.12), -1) if i < n - 1 else None


def draw_cable(rng: np.random.Generator, albedo: np.ndarray, floor: np.ndarray) -> None:
    """A cable lying on the floor (image space): a smooth dark curve with a highlight, in place."""
    H, W = floor.shape
    ys, xs = np.nonzero(floor)
    if len(ys) == 0:
        return
    i, j = rng.integers(len(ys), size=2)
    p0, p3 = np.array([xs[i], ys[i]], float), np.array([xs[j], ys[j]], float)
    p1 = p0 + rng.normal(0, W * 0.3, 2)
    p2 = p3 + rng.normal(0, W * 0.3, 2)
    t = np.linspace(0, 1, 60)[:, None]
    pts = ((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3).astype(np.int32)
    th = max(1, int(round(W / 256 * rng.uniform(1.5, 3.5))))
    col = (0.05, 0.05, 0.05) if rng.random() < 0.6 else tuple(float(v) for v in rng.uniform(0.1, 0.9, 3))
    cv2.polylines(albedo, [pts], False, col, th)
    if th > 1:
        cv2.polylines(albedo, [pts - [0, th // 2]], False, tuple(min(1.0, c + 0.3) for c in col), 1)


@dataclass
class Person:
    x: float  # foot position (image px)
    y: float
    height: float  # px
    phase: float  # walking phase (radians)
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    skin: tuple[float, float, float]
    top: bool = False  # seen from above (ceiling camera): shoulders and head only


def random_person(rng: np.random.Generator, x: float, y: float, height: float) -> Person:
    shirts = [(0.6, 0.3, 0.1), (0.15, 0.15, 0.15), (0.85, 0.85, 0.85), (0.2, 0.2, 0.6), (0.3, 0.5, 0.3), (0.7, 0.5, 0.4)]
    trousers = [(0.1, 0.1, 0.1), (0.35, 0.25, 0.15), (0.3, 0.3, 0.3), (0.45, 0.55, 0.65)]
    skin = [(0.45, 0.6, 0.8), (0.3, 0.4, 0.55), (0.2, 0.28, 0.4)]

    def pick(opts: list[tuple[float, float, float]]) -> tuple[float, float, float]:
        c0, c1, c2 = (float(v) for v in np.clip(np.array(opts[rng.integers(len(opts))]) * rng.uniform(0.85, 1.15), 0, 1))
        return c0, c1, c2

    return Person(x, y, height, float(rng.uniform(0, 2 * np.pi)), pick(shirts), pick(trousers), pick(skin))


def draw_person(p: Person, occ: np.ndarray, col: np.ndarray) -> None:
    """A simple standing/walking silhouette with its feet at (x, y), into the occluder layers."""
    h = p.height
    x, y = p.x, p.y
    if p.top:
        ang = float(np.degrees(p.phase) % 180)
        for layer, c in ((occ, 1.0), (col, p.shirt)):
            cv2.ellipse(layer, (int(x), int(y)), (max(2, int(0.5 * h)), max(2, int(0.2 * h))), ang, 0, 360, c, -1)
        for layer, c in ((occ, 1.0), (col, (0.1, 0.1, 0.12) if p.skin[0] < 0.35 else (0.15, 0.2, 0.3))):
            cv2.circle(layer, (int(x), int(y)), max(2, int(0.2 * h)), c, -1)
        return
    sw = 0.18 * h * np.sin(p.phase)
    leg_w = max(2, int(0.07 * h))
    hip = (int(x), int(y - 0.47 * h))
    for s, dx in ((1, -0.03 * h), (-1, 0.03 * h)):
        foot = (int(x + dx + s * sw * 0.5), int(y))
        for layer, c in ((occ, 1.0), (col, p.trousers)):
            cv2.line(layer, (hip[0] + int(dx), hip[1]), foot, c, leg_w)
    body = np.array([[x - 0.12 * h, y - 0.47 * h], [x + 0.12 * h, y - 0.47 * h], [x + 0.14 * h, y - 0.8 * h], [x - 0.14 * h, y - 0.8 * h]], np.int32)
    for layer, c in ((occ, 1.0), (col, p.shirt)):
        cv2.fillPoly(layer, [body], c)
        for s in (-1, 1):
            cv2.line(layer, (int(x + s * 0.13 * h), int(y - 0.78 * h)), (int(x + s * 0.16 * h - s * sw * 0.3), int(y - 0.5 * h)), c, max(2, int(0.05 * h)))
    for layer, c in ((occ, 1.0), (col, p.skin)):
        cv2.circle(layer, (int(x), int(y - 0.89 * h)), max(2, int(0.07 * h)), c, -1)


def draw_person_shadow(p: Person, shadow: np.ndarray, direction: tuple[float, float], strength: float) -> None:
    """A soft elongated shadow cast from the person's feet (into a shadow-darkness layer, 0..1)."""
    dx, dy = direction
    L = p.height * 0.5
    c = (int(p.x + dx * L * 0.5), int(p.y + dy * L * 0.2))
    ang = float(np.degrees(np.arctan2(dy * 0.4, dx)))
    cv2.ellipse(shadow, c, (max(2, int(L * 0.55)), max(2, int(p.height * 0.06))), ang, 0, 360, strength, -1)


def draw_sign(rng: np.random.Generator, x: float, y: float, height: float, occ: np.ndarray, col: np.ndarray) -> None:
    """A yellow A-frame caution ("wet floor") sign standing at (x, y)."""
    h = height
    w = h * rng.uniform(0.45, 0.6)
    yellow = (0.05, 0.78, 0.95)
    poly = np.array([[x - w / 2, y], [x + w / 2, y], [x + w * 0.3, y - h], [x - w * 0.3, y - h]], np.int32)
    cv2.fillPoly(occ, [poly], 1.0)
    cv2.fillPoly(col, [poly], yellow)
    tri = np.array([[x, y - 0.85 * h], [x - 0.2 * w, y - 0.5 * h], [x + 0.2 * w, y - 0.5 * h]], np.int32)
    cv2.polylines(col, [tri], True, (0.05, 0.05, 0.05), max(1, int(h * 0.03)))
    cv2.rectangle(col, (int(x - 0.3 * w), int(y - 0.35 * h)), (int(x + 0.3 * w), int(y - 0.28 * h)), (0.05, 0.05, 0.05), -1)


def draw_shadow_blob(rng: np.random.Generator, shadow: np.ndarray, floor: np.ndarray, strength: float) -> None:
    """A soft shadow of something outside the frame (rack, column, window frame)."""
    H, W = shadow.shape
    ys, xs = np.nonzero(floor)
    if len(ys) == 0:
        return
    i = rng.integers(len(ys))
    c = np.array([xs[i], ys[i]], float)
    if rng.random() < 0.5:  # long band (column / window frame)
        a = rng.uniform(0, np.pi)
        L, w = W * rng.uniform(0.4, 1.2), W * rng.uniform(0.03, 0.12)
        d = np.array([np.cos(a), np.sin(a)])
        n = np.array([-d[1], d[0]])
        poly = np.array([c - d * L / 2 - n * w / 2, c + d * L / 2 - n * w * rng.uniform(0.3, 1.5),
                         c + d * L / 2 + n * w / 2, c - d * L / 2 + n * w / 2], np.int32)
        cv2.fillPoly(shadow, [poly], strength)
    else:  # irregular blob
        pts = []
        r = W * rng.uniform(0.06, 0.2)
        for a in np.sort(rng.uniform(0, 2 * np.pi, 7)):
            rr = r * rng.uniform(0.5, 1.3)
            pts.append(c + rr * np.array([np.cos(a), np.sin(a) * 0.6]))
        cv2.fillPoly(shadow, [np.array(pts, np.int32)], strength)


_OBJECT_COLOURS = [(0.35, 0.55, 0.7), (0.2, 0.2, 0.22), (0.55, 0.55, 0.55), (0.15, 0.35, 0.15), (0.6, 0.3, 0.15), (0.1, 0.1, 0.5)]


def draw_object(rng: np.random.Generator, x: float, y: float, height: float, occ: np.ndarray, col: np.ndarray,
                shadow: np.ndarray) -> None:
    """A box, bin or trolley standing at (x, y): shaded cuboid or cylinder with a contact shadow."""
    h = height
    w = h * rng.uniform(0.6, 1.6)
    c = np.array(_OBJECT_COLOURS[rng.integers(len(_OBJECT_COLOURS))], np.float32) * rng.uniform(0.8, 1.2)
    cv2.ellipse(shadow, (int(x), int(y)), (max(2, int(w * 0.65)), max(1, int(h * 0.12))), 0, 0, 360, 0.5, -1)
    if rng.random() < 0.6:  # cuboid: front, top and side faces
        d = w * rng.uniform(0.2, 0.5)
        s = rng.choice([-1, 1])
        front = np.array([[x - w / 2, y], [x + w / 2, y], [x + w / 2, y - h], [x - w / 2, y - h]], np.int32)
        top = np.array([[x - w / 2, y - h], [x + w / 2, y - h],
                        [x + w / 2 + s * d * 0.5, y - h - d * 0.5], [x - w / 2 + s * d * 0.5, y - h - d * 0.5]], np.int32)
        xe = x + s * w / 2
        side = np.array([[xe, y], [xe + s * d * 0.5, y - d * 0.5], [xe + s * d * 0.5, y - h - d * 0.5], [xe, y - h]], np.int32)
        for poly, k in ((side, 0.6), (front, 0.85), (top, 1.1)):
            cv2.fillPoly(occ, [poly], 1.0)
            cv2.fillPoly(col, [poly], tuple(float(v) for v in np.clip(c * k, 0, 1)))
        if rng.random() < 0.5:  # tape / label
            cv2.line(col, (int(x - w / 2), int(y - h * 0.5)), (int(x + w / 2), int(y - h * 0.5)),
                     tuple(float(v) for v in np.clip(c * 1.3, 0, 1)), max(1, int(h * 0.06)))
    else:  # bin: cylinder
        r = w / 2
        cv2.rectangle(occ, (int(x - r), int(y - h)), (int(x + r), int(y)), 1.0, -1)
        cv2.ellipse(occ, (int(x), int(y)), (max(1, int(r)), max(1, int(r * 0.3))), 0, 0, 180, 1.0, -1)
        cv2.rectangle(col, (int(x - r), int(y - h)), (int(x + r), int(y)), tuple(float(v) for v in c * 0.85), -1)
        cv2.ellipse(col, (int(x), int(y)), (max(1, int(r)), max(1, int(r * 0.3))), 0, 0, 180, tuple(float(v) for v in c * 0.85), -1)
        cv2.rectangle(col, (int(x - r * 0.3), int(y - h)), (int(x + r * 0.1), int(y)), tuple(float(v) for v in np.clip(c * 1.2, 0, 1)), -1)
        cv2.ellipse(occ, (int(x), int(y - h)), (max(1, int(r)), max(1, int(r * 0.3))), 0, 0, 360, 1.0, -1)
        cv2.ellipse(col, (int(x), int(y - h)), (max(1, int(r)), max(1, int(r * 0.3))), 0, 0, 360, tuple(float(v) for v in c * 0.4), -1)
