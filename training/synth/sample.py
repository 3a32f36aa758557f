"""Still images: `generate_sample(seed)` -> SynthSample (image, mask, label, meta)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synth.scene import Scene

MIN_SPILL_FRACTION = 0.002  # a spill image shows at least this share of pixels of liquid


@dataclass
class SynthSample:
    image: np.ndarray  # HxWx3 BGR uint8
    mask: np.ndarray  # HxW uint8 {0,1}: pixels the liquid was drawn on (visible after occlusion, AA rim included)
    label: str  # "spill" | "clean"
    meta: dict


def _timestamp(rng: np.random.Generator) -> str:
    d = int(rng.integers(0, 3650))
    y, rem = 2016 + d // 365, d % 365
    return f"{y:04d}-{rem // 31 % 12 + 1:02d}-{rem % 28 + 1:02d} {int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}:{int(rng.integers(0, 60)):02d}"


def build_scene(seed: int, size: int, spill: bool, attempt: int = 0, **kw) -> Scene:
    return Scene.build(seed * 16 + attempt, size, size, spill=spill, **kw)


def generate_sample(seed: int, size: int = 256, p_spill: float = 0.5, **kw) -> SynthSample:
    """A deterministic synthetic CCTV still. Same seed (and arguments) -> identical image and mask.

    Extra keyword arguments (floor=, liquid=, shape=, view=, lighting=, distractors=) pin choices;
    they are for inspection and tests, training uses the defaults.
    """
    rng = np.random.default_rng([seed, 0x5911])
    spill = bool(rng.random() < p_spill)
    stamp = _timestamp(rng)
    min_px = max(12, int(MIN_SPILL_FRACTION * size * size))
    for attempt in range(6):
        scene = build_scene(seed, size, spill, attempt, **kw)
        img, mask = scene.render(level=0.0, stamp_text=stamp, frame_seed=seed)
        if not spill or int(mask.sum()) >= min_px:
            break
    else:  # very unlikely: pin a plain pool on a ceiling view so the sample stays a spill
        scene = build_scene(seed, size, spill, 99, **{**kw, "shape": "pool", "view": "ceiling", "distractors": []})
        img, mask = scene.render(level=0.0, stamp_text=stamp, frame_seed=seed)
    label = "spill" if spill and mask.any() else "clean"
    if label == "clean":
        mask = np.zeros_like(mask)
    meta = {
        "seed": seed,
        "floor": scene.floor.name,
        "liquid": scene.liquid.name if (scene.liquid is not None and label == "spill") else None,
        "shape": scene.shape if label == "spill" else None,
        "lighting": scene.lighting,
        "view": scene.view,
        "distractors": scene.distractors,
        "attempt": attempt,
    }
    return SynthSample(image=img, mask=mask, label=label, meta=meta)
