"""Liquids: catalogue of optical properties, organic shape fields, and image-space compositing.

A liquid's shape is a scalar *field* in the floor plane; the liquid covers `field >= level`. A still
image uses level 0; a clip lowers the level over time so the pool grows outward from its centre.
The compositing works on the warped field, so the mask returned by the scene is exactly the set of
pixels the liquid was drawn on (alpha > 0: the body plus a 1-px anti-aliased rim).

Appearance cues (what separates liquid from dry stains): sharp mirror reflections of the room and
of the lights, specular glints clipped by the outline, refraction (the floor texture under water is
displaced and softened), a bright/dark meniscus rim, plus colour/opacity for the coloured liquids.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.synth import noise
from training.synth.fastops import rep3, tint3


@dataclass(frozen=True)
class Liquid:
    name: str
    colour: tuple[float, float, float]  # BGR in [0, 1]
    opacity: tuple[float, float]  # range of the body's opacity over the floor
    darken: tuple[float, float]  # multiplier on the floor seen through / wetted by the liquid
    reflect: tuple[float, float]  # mirror-reflection strength
    refract_px: float  # displacement of the floor texture under it (at 256 px)


LIQUIDS: dict[str, Liquid] = {
    "water": Liquid("water", (0.0, 0.0, 0.0), (0.0, 0.0), (0.6, 0.92), (0.15, 0.55), 2.5),
    "tea": Liquid("tea", (0.08, 0.3, 0.55), (0.5, 0.85), (0.7, 0.9), (0.2, 0.5), 1.0),
    "juice": Liquid("juice", (0.05, 0.45, 0.85), (0.55, 0.85), (0.75, 0.9), (0.2, 0.5), 1.0),
    "blackoil": Liquid("blackoil", (0.025, 0.025, 0.03), (0.85, 0.98), (0.3, 0.5), (0.3, 0.8), 0.0),
    "cookingoil": Liquid("cookingoil", (0.04, 0.6, 0.85), (0.35, 0.7), (0.78, 0.95), (0.3, 0.65), 1.5),
    "milk": Liquid("milk", (0.9, 0.93, 0.95), (0.6, 0.95), (0.9, 1.0), (0.15, 0.4), 0.0),
    "chemical": Liquid("chemical", (0.7, 0.35, 0.1), (0.3, 0.7), (0.75, 0.9), (0.25, 0.6), 1.5),
    "film": Liquid("film", (0.5, 0.5, 0.5), (0.08, 0.22), (0.85, 0.97), (0.3, 0.6), 0.5),
    "foam": Liquid("foam", (0.92, 0.93, 0.93), (0.5, 0.9), (0.85, 1.0), (0.05, 0.2), 0.0),
}
LIQUID_WEIGHTS: dict[str, float] = {
    "water": 0.26, "tea": 0.12, "juice": 0.06, "blackoil": 0.12, "cookingoil": 0.12,
    "milk": 0.07, "chemical": 0.09, "film": 0.08, "foam": 0.05,
}
SHAPES: tuple[str, ...] = ("pool", "splash", "trail", "drips")
SHAPE_WEIGHTS = np.array([0.55, 0.2, 0.15, 0.1])
_CHEM_COLOURS = [(0.7, 0.4, 0.15), (0.3, 0.6, 0.3), (0.55, 0.35, 0.75), (0.6, 0.3, 0.55), (0.3, 0.7, 0.7)]


def pick_liquid(rng: np.random.Generator, name: str | None = None) -> tuple[Liquid, dict]:
    """A liquid and its sampled parameters (opacity, darkening, reflection, colour)."""
    if name is None:
        names = list(LIQUID_WEIGHTS)
        w = np.array([LIQUID_WEIGHTS[n] for n in names])
        name = names[int(rng.choice(len(names), p=w / w.sum()))]
    liq = LIQUIDS[name]
    colour = np.array(liq.colour, np.float32)
    if name == "chemical":
        colour = np.array(_CHEM_COLOURS[rng.integers(len(_CHEM_COLOURS))], np.float32)
    colour = np.clip(colour * rng.uniform(0.85, 1.15, 3), 0, 1).astype(np.float32)
    params = {
        "opacity": float(rng.uniform(*liq.opacity)),
        "darken": float(rng.uniform(*liq.darken)),
        "reflect": float(rng.uniform(*liq.reflect)),
        "colour": colour,
    }
    return liq, params


def shape_field(rng: np.random.Generator, T: int, centre: tuple[float, float], radius: float, shape: str) -> np.ndarray:
    """Scalar field (TxT float32) in the floor plane; the liquid covers field >= 0.

    The field falls off with distance from the shape's skeleton (so lowering the level grows it
    outward) and is perturbed by smooth noise (organic, lobed outlines, satellite droplets). Only a
    window around the shape is computed; elsewhere the field is -10.
    """
    cx, cy = centre
    out = np.full((T, T), -10.0, np.float32)
    if shape in ("pool", "splash"):
        reach = radius * (2.4 if shape == "splash" else 1.9)
        pts = None
    else:
        a = rng.uniform(0, 2 * np.pi)
        n = int(rng.integers(4, 9))
        step = radius * rng.uniform(0.6, 1.2)
        pts = []
        x, y = cx, cy
        for _ in range(n):
            pts.append((x, y))
            a += rng.normal(0, 0.5)
            x += step * np.cos(a)
            y += step * np.sin(a)
        reach = 0.0
    if pts is None:
        x0, x1 = int(max(cx - reach, 0)), int(min(cx + reach + 1, T))
        y0, y1 = int(max(cy - reach, 0)), int(min(cy + reach + 1, T))
    else:
        arr = np.array(pts)
        pad = radius * 0.9 + 4
        x0, x1 = int(max(arr[:, 0].min() - pad, 0)), int(min(arr[:, 0].max() + pad + 1, T))
        y0, y1 = int(max(arr[:, 1].min() - pad, 0)), int(min(arr[:, 1].max() + pad + 1, T))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return out
    h, w = y1 - y0, x1 - x0
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    ncells = max(3.0, max(h, w) / max(radius, 4) * rng.uniform(1.2, 2.5))
    wobble = noise.fbm(rng, h, w, ncells, 3, 0.55)
    if pts is None:
        ang = rng.uniform(0, np.pi)
        ax = rng.uniform(0.6, 1.0)
        dx, dy = xx - cx, yy - cy
        u = (dx * np.cos(ang) + dy * np.sin(ang)) / radius
        v = (-dx * np.sin(ang) + dy * np.cos(ang)) / (radius * ax)
        f = 1 - np.sqrt(u * u + v * v)
        for _ in range(int(rng.integers(0, 4))):  # metaball lobes
            a = rng.uniform(0, 2 * np.pi)
            d = rng.uniform(0.4, 0.8) * radius
            r = rng.uniform(0.3, 0.6) * radius
            f = np.maximum(f, 1 - np.hypot(xx - cx - d * np.cos(a), yy - cy - d * np.sin(a)) / r)
        f = f + rng.uniform(0.25, 0.45) * wobble
        if shape == "splash":
            f = f * 1.3 - 0.3
            for _ in range(int(rng.integers(8, 25))):
                a = rng.uniform(0, 2 * np.pi)
                d = rng.uniform(0.9, 2.0) * radius
                r = rng.uniform(0.03, 0.12) * radius + 1.5
                px, py = cx + d * np.cos(a) - x0, cy + d * np.sin(a) - y0
                a0, a1 = int(max(px - r - 2, 0)), int(min(px + r + 3, w))
                b0, b1 = int(max(py - r - 2, 0)), int(min(py + r + 3, h))
                if a1 <= a0 or b1 <= b0:
                    continue
                gy, gx = np.mgrid[b0:b1, a0:a1].astype(np.float32)
                f[b0:b1, a0:a1] = np.maximum(f[b0:b1, a0:a1], 1 - np.hypot(gx - px, gy - py) / r)
        out[y0:y1, x0:x1] = f
        return out
    # trail / drips: distance to a skeleton drawn as a polyline (or scattered drop centres)
    skel = np.full((h, w), 255, np.uint8)
    local = [(int(px - x0), int(py - y0)) for px, py in pts]
    step = float(np.hypot(*(np.array(pts[1]) - np.array(pts[0]))))
    if shape == "trail":
        cv2.polylines(skel, [np.array(local, np.int32)], False, 0, 1)
        width = radius * rng.uniform(0.15, 0.35)
    else:
        for p in local:
            for _ in range(int(rng.integers(1, 4))):
                q = (int(p[0] + rng.normal(0, step / 3)), int(p[1] + rng.normal(0, step / 3)))
                skel[min(max(q[1], 0), h - 1), min(max(q[0], 0), w - 1)] = 0
        width = radius * rng.uniform(0.08, 0.2) + 1.5
    dist = cv2.distanceTransform(skel, cv2.DIST_L2, 3)
    out[y0:y1, x0:x1] = 1 - dist / width + rng.uniform(0.2, 0.4) * wobble
    return out


def alpha_from_field(field: np.ndarray, level: float) -> np.ndarray:
    """Anti-aliased coverage from a field: ~1 px ramp; alpha >= 0.5 exactly where field >= level."""
    gx = cv2.Sobel(field, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(field, cv2.CV_32F, 0, 1, ksize=1)
    g = np.sqrt(gx * gx + gy * gy) * 0.5 + 1e-4
    sd = (field - level) / g  # ~signed distance in pixels
    a = np.clip(0.5 + sd, 0.0, 1.0).astype(np.float32)
    inside = field >= level
    a[inside] = np.maximum(a[inside], 0.5)
    # the sub-0.5 rim only next to covered pixels (no faint halo along ridges just below the level)
    near = cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    out = ~inside
    a[out] = np.where(near[out], np.minimum(a[out], 0.49), 0.0)
    return a


def composite(
    img: np.ndarray,
    lit_floor: np.ndarray,
    alpha: np.ndarray,
    liquid: Liquid,
    params: dict,
    env_sharp: np.ndarray,
    fresnel: np.ndarray,
    spec: np.ndarray,
    light: np.ndarray,
    rng_seed: int,
) -> np.ndarray:
    """Draw the liquid over `img` (HxWx3 float32, already lit) where `alpha` > 0.

    lit_floor: the lit floor without reflections (what refraction shows); env_sharp: sharp mirror
    image of the room; fresnel: HxW reflection weight of the view angle; spec: HxW sharp light glints;
    light: HxWx3 illumination (to light the liquid's own colour).
    """
    H, W = alpha.shape
    ys, xs = np.nonzero(alpha > 0)
    if len(ys) == 0:
        return img
    y0, y1 = max(ys.min() - 4, 0), min(ys.max() + 5, H)
    x0, x1 = max(xs.min() - 4, 0), min(xs.max() + 5, W)
    rng = np.random.default_rng(rng_seed)
    sl = (slice(y0, y1), slice(x0, x1))
    a = alpha[sl]
    h, w = a.shape
    scale = max(H, W) / 256.0
    under = lit_floor
    if liquid.refract_px > 0:
        d = liquid.refract_px * scale
        dx = noise.smooth(rng, h, w, max(w, h) / (12 * scale)) * d
        dy = noise.smooth(rng, h, w, max(w, h) / (12 * scale)) * d
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        under_c = cv2.remap(lit_floor, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        under_c = cv2.GaussianBlur(under_c, (0, 0), 0.6 * scale)
    else:
        under_c = under[sl].copy()
    body = under_c * params["darken"]
    op = params["opacity"]
    colour = params["colour"]
    if liquid.name == "film":  # iridescent thin film: hue varies smoothly
        hue = noise.smooth(rng, h, w, 4)
        colour_map = np.stack([0.5 + 0.5 * np.sin(hue * 3 + k * 2.1) for k in range(3)], -1).astype(np.float32)
        liquid_col = colour_map * light[sl]
        opm = np.full((h, w), op, np.float32)
    elif liquid.name == "foam":
        bub = noise.fbm(rng, h, w, max(w, h) / (3 * scale), 2)
        opm = np.clip(op * (0.6 + 0.6 * bub), 0, 1).astype(np.float32)
        liquid_col = tint3(light[sl], colour) * rep3(0.85 + 0.15 * np.clip(bub, -1, 1))
    else:
        # thicker in the middle: opacity rises from the edge over a few pixels
        core = cv2.GaussianBlur(a, (0, 0), 2.5 * scale)
        thick = 0.8 + 0.2 * np.clip(noise.smooth(rng, h, w, max(w, h) / (20 * scale)), -1, 1)
        opm = op * np.clip(core * 1.6, 0.35, 1.0) * thick
        if liquid.name in ("tea", "juice", "chemical"):  # drying ring: a little denser at the edge
            opm = opm + 0.25 * op * np.clip(a - core, 0, None)
        opm = np.clip(opm, 0, 1).astype(np.float32)
        liquid_col = tint3(light[sl], colour)
    opm3 = rep3(opm)
    body = body + (liquid_col - body) * opm3
    refl = rep3(params["reflect"] * fresnel[sl])
    body = body * (1 - refl) + env_sharp[sl] * refl
    # specular glints of the lights, only on the liquid (clipped by its outline)
    body = body + rep3(spec[sl] * (0.3 + 0.7 * params["reflect"]))
    # meniscus rim: bright on the side facing the light (top of image), darker at the bottom
    soft = cv2.GaussianBlur(a, (0, 0), 1.0 * scale)
    gy = cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3)
    rim = np.clip(gy, 0, None) * 0.25 - np.clip(-gy, 0, None) * 0.12
    body = body + rep3(rim * (0.2 + 0.8 * params["reflect"]) * scale) * light[sl]
    out = img.copy()
    out[sl] = img[sl] + (body - img[sl]) * rep3(a)
    return out
