"""Write generated stills to disk as a dataset in the shared manifest format."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from training.synth.sample import generate_sample


def write_images(out: Path, *, n: int, seed: int = 0, size: int = 256, p_spill: float = 0.5,
                 val_fraction: float = 0.0, quality: int = 92) -> dict:
    """images/<seed>.jpg, masks/<seed>.png (0/255) and manifest.jsonl with one row per image.

    Rows: file, label, source="synthetic", sequence (synth-<seed>), liquids, polygons (outer contours of
    the mask, in pixels), split, mask, meta. Paths are relative to `out`.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    counts = {"spill": 0, "clean": 0}
    with open(out / "manifest.jsonl", "w") as fh:
        for i in range(n):
            s = seed + i
            smp = generate_sample(s, size=size, p_spill=p_spill)
            img_rel, mask_rel = f"images/{s:07d}.jpg", f"masks/{s:07d}.png"
            cv2.imwrite(str(out / img_rel), smp.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            cv2.imwrite(str(out / mask_rel), (smp.mask * 255).astype(np.uint8))
            split = "val" if (val_fraction > 0 and np.random.default_rng([s, 0x5A1]).random() < val_fraction) else "train"
            row = {
                "file": img_rel,
                "label": smp.label,
                "source": "synthetic",
                "sequence": f"synth-{s}",
                "liquids": [smp.meta["liquid"]] if smp.meta["liquid"] else [],
                "polygons": mask_polygons(smp.mask),
                "split": split,
                "mask": mask_rel,
                "meta": smp.meta,
            }
            fh.write(json.dumps(row) + "\n")
            counts[smp.label] += 1
    return {"n": n, **counts}


def mask_polygons(mask: np.ndarray, min_area: float = 4.0) -> list[list[list[int]]]:
    """Outer contours of a {0,1} mask as [[x, y], ...] polygons (the mask file is the exact truth)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c[:, 0, :].tolist() for c in contours if cv2.contourArea(c) >= min_area and len(c) >= 3]
