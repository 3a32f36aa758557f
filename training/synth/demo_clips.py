"""Render the two committed demo clips: `python -m training.synth.demo_clips [OUT_DIR]`.

samples/clips/spill.mp4 and clean.mp4 are the same synthetic scene (same seed): the spill clip has a
tea pool that appears at 6.0 s and spreads over 5 s while people walk by; the clean clip has the same
people, shadows, glare and cable but no liquid.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypedDict

from training.synth.clip import ClipTruth, render_clip

DEMO_SEED = 11


class DemoKw(TypedDict):
    """The keyword arguments of `render_clip` that both demo clips share."""

    seconds: float
    fps: float
    size: tuple[int, int]
    liquid: str
    floor: str
    view: str
    lighting: str
    distractors: list[str]


DEMO_KW = DemoKw(seconds=24, fps=5, size=(640, 480), liquid="tea", floor="marble", view="oblique",
                 lighting="fluorescent", distractors=["shadow", "glare", "cable"])
DEMO_ONSET_S = 6.0


def render_demo(out_dir: Path) -> tuple[ClipTruth, ClipTruth]:
    spill = render_clip(out_dir / "spill.mp4", seed=DEMO_SEED, spill=True, onset_s=DEMO_ONSET_S, **DEMO_KW)
    clean = render_clip(out_dir / "clean.mp4", seed=DEMO_SEED, spill=False, **DEMO_KW)
    return spill, clean


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("samples/clips")
    for t in render_demo(out):
        print(t.path, t.n_frames, "frames, onset", t.onset_s)
