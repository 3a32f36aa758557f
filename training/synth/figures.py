"""Figured floors: the dry floor textures that look most like a liquid to the model.

The 2026-12-02 model's false alarms on photos of dry floors it had never seen were a dark, glossy
knot in a wooden floor (spill probability 0.996) and a patterned carpet (0.44): a dark, rounded,
sharp-edged patch on a regular floor is what a puddle looks like from above. The plain generator
floors have none (its wood is planks and straight grain, its carpets are pile noise), so these are
hard negatives it can add: knots in wood and desk tops (a dark core elongated along the grain, rings, a resin tint) and
motifs on carpets (a lattice of diamonds, dots or squares in a contrasting colour, sometimes a striped
border band). They are drawn into the floor albedo, before the perspective warp, like the floor itself.
"""

from __future__ import annotations

import cv2
import numpy as np

from training.synth import noise

WOODS = ("wood", "desk")
CARPETS = ("carpet",)
FIGURED = WOODS + CARPETS


def draw_knots(rng: np.random.Generator, albedo: np.ndarray, grain_along_y: bool = True) -> None:
    """1-4 knots into a TxTx3 float32 albedo (in place)."""
    T = albedo.shape[0]
    n = int(rng.integers(1, 5))
    yy, xx = np.mgrid[0:T, 0:T].astype(np.float32)
    if not grain_along_y:
        yy, xx = xx, yy
    factor = np.ones((T, T), np.float32)
    for _ in range(n):
        cx, cy = rng.uniform(0.05, 0.95, 2) * T
        r = T * rng.uniform(0.02, 0.09)  # across the grain
        e = rng.uniform(1.3, 3.0)  # elongated along the grain
        d = np.sqrt(((xx - cx) / r) ** 2 + ((yy - cy) / (r * e)) ** 2)
        depth = rng.uniform(0.35, 0.75)
        core = np.exp(-(d ** 2) * rng.uniform(1.5, 3.0))
        rings = 0.12 * np.exp(-d / 2.5) * (0.5 + 0.5 * np.sin(2 * np.pi * d * rng.uniform(0.8, 1.6)))
        rim = 0.25 * np.exp(-((d - 1.0) ** 2) * 12.0) if rng.random() < 0.5 else 0.0  # a dark crack round the core
        factor *= np.clip(1.0 - depth * core - rings - rim, 0.15, 1.0)
    albedo *= factor[..., None]
    # knots are more saturated (resin): pull the darkened pixels towards brown-red
    dark = (1.0 - factor)[..., None]
    albedo[:] = np.clip(albedo * (1.0 + dark * np.array([-0.25, 0.0, 0.15], np.float32)), 0.0, 1.0)


def draw_motif(rng: np.random.Generator, albedo: np.ndarray) -> None:
    """A repeating carpet motif (and sometimes a striped border band) into a TxTx3 albedo, in place."""
    T = albedo.shape[0]
    s = max(8.0, T / rng.uniform(5, 14))  # pattern period
    kind = str(rng.choice(["diamond", "dot", "square"]))
    m = rng.uniform(0.18, 0.4)
    yy, xx = np.mgrid[0:T, 0:T].astype(np.float32)
    shift = (np.floor(yy / s) % 2) * (s / 2) if rng.random() < 0.5 else 0.0  # staggered rows
    u = ((xx + shift) % s) / s - 0.5
    v = (yy % s) / s - 0.5
    if kind == "diamond":
        inside = np.abs(u) + np.abs(v) - m
    elif kind == "dot":
        inside = np.sqrt(u ** 2 + v ** 2) - m * 0.8
    else:
        inside = np.maximum(np.abs(u), np.abs(v)) - m * 0.7
    fuzz = 0.03 * noise.white(rng, T, T)  # pile makes the edges ragged
    alpha = np.clip(0.5 - (inside + fuzz) * s / 2.0, 0.0, 1.0)
    base = albedo.reshape(-1, 3).mean(axis=0)
    lighter = rng.random() < 0.5
    col = np.clip(base * (rng.uniform(1.4, 2.2) if lighter else rng.uniform(0.3, 0.6)) + rng.normal(0, 0.08, 3), 0.02, 1.0)
    albedo[:] = albedo * (1 - alpha[..., None]) + col.astype(np.float32) * alpha[..., None] * (albedo / np.maximum(base, 1e-3)) ** 0.5
    if rng.random() < 0.4:  # a border band: dark stripes or a zigzag across the carpet
        y0 = rng.uniform(0.2, 0.8) * T
        h = T * rng.uniform(0.08, 0.2)
        band = (yy >= y0) & (yy < y0 + h)
        period = s * rng.uniform(0.3, 0.8)
        wave = np.sin(2 * np.pi * (xx + (np.abs(((yy - y0) % period) - period / 2) if rng.random() < 0.5 else 0.0)) / period)
        stripe = band & (wave > 0.2)
        dark = np.clip(base * rng.uniform(0.2, 0.5) + rng.normal(0, 0.05, 3), 0.02, 1.0).astype(np.float32)
        albedo[stripe] = albedo[stripe] * 0.3 + dark * 0.7
    np.clip(albedo, 0.0, 1.0, out=albedo)
    cv2.GaussianBlur(albedo, (3, 3), 0, dst=albedo)


def figure_floor(rng: np.random.Generator, name: str, albedo: np.ndarray) -> str:
    """Knots for wooden floors and desks, a motif for carpets (in place); the figure's name. Only for
    the floors in ``FIGURED``."""
    if name in WOODS:
        draw_knots(rng, albedo, grain_along_y=name == "wood")
        return "knots"
    if name in CARPETS:
        draw_motif(rng, albedo)
        return "motif"
    raise ValueError(f"floor {name!r} has no figure; figured floors: {FIGURED}")
