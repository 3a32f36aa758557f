"""The suppression proof clips (training/synth/lookalike.py), rendered once into a folder and read
back as a producer would send them (2 fps, 480 px wide JPEGs, labels from the clips' sidecars)."""

from __future__ import annotations

from pathlib import Path

from training.replay_sources import SourceFrame, from_video

FPS = 2.0

#: The map cells the shipped model fires on for the look-alike stain (``STAIN_AT`` = 0.33, 0.65 of the
#: frame), per map grid: 160-px models (10x10) and 192-px models (12x12, measured on the
#: effl0-192-20261201 model: row 7 columns 3-5 and row 8 column 3).
STAIN_CELLS: dict[tuple[int, int], frozenset[int]] = {
    (10, 10): frozenset({62, 63}),
    (12, 12): frozenset({87, 88, 89, 99}),
}


def render_clips(folder: Path, camera: str) -> dict[str, list[SourceFrame]]:
    """``{"lookalike" | "spill_elsewhere" | "spill_on_spot": frames}`` of one camera; the mp4 files
    and their sidecar JSON stay in ``folder``."""
    from training.synth.lookalike import CLIPS, render_lookalike_clips

    render_lookalike_clips(folder)
    return {name: from_video(folder / f"{name}.mp4", fps=FPS, camera=camera) for name in CLIPS}
