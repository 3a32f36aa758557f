"""A labelled frame sequence for replay tests (tiny-model images: red patch = spill)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.tiny_model import clean_jpeg, spill_jpeg

SPILL = range(20, 45)  # cam-r: a spill is visible on frames 20..44 of 60 (2 fps)


def write_sequence(folder: Path) -> Path:
    """A labelled manifest without times: cam-r (60 frames, spill on 20..44) and cam-q (30 clean)."""
    img = folder / "img"
    img.mkdir(parents=True)
    (img / "spill.jpg").write_bytes(spill_jpeg())
    (img / "clean.jpg").write_bytes(clean_jpeg())
    lines = []
    for i in range(60):
        s = i in SPILL
        lines.append({"file": f"img/{'spill' if s else 'clean'}.jpg", "label": "spill" if s else "clean", "camera": "cam-r"})
        if i < 30:
            lines.append({"file": "img/clean.jpg", "label": "clean", "camera": "cam-q"})
    m = folder / "manifest.jsonl"
    m.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return m
