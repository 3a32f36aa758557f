"""The suppression proof clips (training/synth/lookalike.py), rendered once into a folder and read
back as a producer would send them (2 fps, 480 px wide JPEGs, labels from the clips' sidecars)."""

from __future__ import annotations

from pathlib import Path

from training.replay_sources import SourceFrame, from_video

FPS = 2.0


def render_clips(folder: Path, camera: str) -> dict[str, list[SourceFrame]]:
    """``{"lookalike" | "spill_elsewhere" | "spill_on_spot": frames}`` of one camera; the mp4 files
    and their sidecar JSON stay in ``folder``."""
    from training.synth.lookalike import CLIPS, render_lookalike_clips

    render_lookalike_clips(folder)
    return {name: from_video(folder / f"{name}.mp4", fps=FPS, camera=camera) for name in CLIPS}
