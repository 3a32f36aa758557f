"""The suppression proof clips: one fixed camera with a persistent look-alike the shipped model flags.

`python -m training.synth.lookalike [OUT_DIR]` (default samples/lookalike) renders three clips of
the same synthetic scene (seed ``SEED``): a glossy vinyl floor with daylight glare and a dry,
dark, wet-looking stain, seen by a fixed oblique camera, people walking by:

* ``lookalike.mp4``: no liquid at all. The shipped model (models/spillwatch.onnx) flags the stain
  (spill probability >= its card threshold, the stain's map cells) in most of the 40 frames (26 with the
  160-px model at 0.867, 38 with the first 192-px model at 0.690, 39 with the shipped one at 0.209), the others
  mostly while a passer-by hides it: a persistent false alarm that pages;
* ``spill_elsewhere.mp4``: the same, and at ``ONSET_S`` a tea pool appears on another part of
  the floor (``ELSEWHERE``);
* ``spill_on_spot.mp4``: the same, and at ``ONSET_S`` milk (white, opaque: clearly not the dark
  stain) spreads over the stain (``STAIN_AT``).

Each clip has its sidecar JSON (training/synth/clip.py ``ClipTruth``: per-frame labels). The
liquids are drawn into the same scene: the floor, camera, light, stain and people are identical
in the three clips, only the liquid differs (built with the same seed and the liquid pinned with
``Scene.build(liquid_at=...)``, then moved into the look-alike scene).
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.synth.clip import ClipTruth, render_clip
from training.synth.scene import Scene

SEED = 118
SIZE = (640, 480)
SCENE_KW = dict(floor="vinyl", distractors=["glare", "stain"], shape="pool", clip_mode=True)  # view, light: by the seed
CLIP_KW = dict(seconds=20, fps=2, size=SIZE)
ONSET_S = 6.0
GROW_S = 2.0
STAIN_AT = (0.33, 0.65)  # the stain's centre (fraction of width, height): the cells the model fires on
ELSEWHERE = (0.72, 0.80)  # well away from the stain: other spill-map cells
CLIPS = ("lookalike", "spill_elsewhere", "spill_on_spot")


def lookalike_scene(liquid: str = "tea", at: tuple[float, float] | None = None, radius: float | None = None) -> Scene:
    """The camera's scene; with ``at``, its liquid lies there (fraction of the image), ``radius``
    a fraction of the width. The look-alikes (stain, glare) never move."""
    base = Scene.build(SEED, *SIZE, spill=True, liquid="tea", **SCENE_KW)  # type: ignore[arg-type]
    if at is None:
        return base
    other = Scene.build(SEED, *SIZE, spill=True, liquid=liquid, liquid_at=at, liquid_radius=radius, **SCENE_KW)  # type: ignore[arg-type]
    # same seed -> same floor, camera and homography (drawn before the liquid): the liquid fits
    base.liquid, base.liquid_params, base.liquid_field = other.liquid, other.liquid_params, other.liquid_field
    base.liquid_box, base.shape = other.liquid_box, other.shape
    return base


def render_lookalike_clips(out_dir: Path) -> dict[str, ClipTruth]:
    out_dir = Path(out_dir)
    out: dict[str, ClipTruth] = {}
    out["lookalike"] = render_clip(out_dir / "lookalike.mp4", seed=SEED, spill=False, scene=lookalike_scene(), **CLIP_KW)  # type: ignore[arg-type]
    out["spill_elsewhere"] = render_clip(
        out_dir / "spill_elsewhere.mp4", seed=SEED, spill=True, onset_s=ONSET_S, grow_s=GROW_S,
        scene=lookalike_scene("tea", ELSEWHERE, 0.09), **CLIP_KW,  # type: ignore[arg-type]
    )
    out["spill_on_spot"] = render_clip(
        out_dir / "spill_on_spot.mp4", seed=SEED, spill=True, onset_s=ONSET_S, grow_s=GROW_S,
        scene=lookalike_scene("juice", STAIN_AT, 0.05), **CLIP_KW,  # type: ignore[arg-type]
    )
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("samples/lookalike")
    for name, t in render_lookalike_clips(target).items():
        print(name, t.n_frames, "frames, onset", t.onset_s)
