"""Cheap, deterministic noise fields (pure numpy + OpenCV).

Smooth noise is made by upsampling small random grids with bicubic interpolation (fast, no Perlin
tables); per-pixel sensor noise is cropped from a fixed gaussian bank so it costs a slice, not a
random draw per pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

_BANK_SIZE = 1024
_BANK: np.ndarray | None = None


def _bank() -> np.ndarray:
    global _BANK
    if _BANK is None:
        _BANK = np.random.default_rng(20261129).standard_normal((_BANK_SIZE, _BANK_SIZE)).astype(np.float32)
    return _BANK


def white(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Unit gaussian per-pixel noise (float32 HxW), a random crop of a fixed bank."""
    bank = _bank()
    if h > _BANK_SIZE or w > _BANK_SIZE:
        reps = (h // _BANK_SIZE + 1, w // _BANK_SIZE + 1)
        bank = np.tile(bank, reps)
    y = int(rng.integers(0, bank.shape[0] - h + 1))
    x = int(rng.integers(0, bank.shape[1] - w + 1))
    out = bank[y : y + h, x : x + w]
    if rng.random() < 0.5:
        out = out[::-1]
    return out


def smooth(rng: np.random.Generator, h: int, w: int, cells: float) -> np.ndarray:
    """Smooth noise with about `cells` features across the longer side, ~unit std, float32."""
    cells = max(cells, 1.0)
    gh = max(2, int(round(cells * h / max(h, w))) + 2)
    gw = max(2, int(round(cells * w / max(h, w))) + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)


def fbm(rng: np.random.Generator, h: int, w: int, cells: float, octaves: int = 3, persistence: float = 0.5) -> np.ndarray:
    """Fractal sum of smooth noise, normalised to ~unit std."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    c = cells
    for _ in range(octaves):
        if c > max(h, w) / 2:
            out += amp * white(rng, h, w)
        else:
            out += amp * smooth(rng, h, w, c)
        total += amp * amp
        amp *= persistence
        c *= 2
    return out / np.float32(np.sqrt(total))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas are done on a downscaled copy (much faster, visually the same)."""
    if sigma <= 0:
        return img
    if sigma < 3:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    f = min(int(sigma / 1.5), max(1, min(h, w) // 8))
    small = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
