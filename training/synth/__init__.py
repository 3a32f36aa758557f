"""Synthetic "staged spill" generator: deterministic CCTV-like stills and clips with pixel masks.

Pure numpy + OpenCV (no torch). Public API:
    generate_sample(seed, size=256, p_spill=0.5) -> SynthSample(image, mask, label, meta)
    render_clip(path, *, seed, spill, seconds=20, fps=5, size=(640, 480), onset_s=None) -> ClipTruth
"""

from training.synth.clip import ClipTruth, render_clip
from training.synth.sample import SynthSample, generate_sample

__all__ = ["ClipTruth", "SynthSample", "generate_sample", "render_clip"]
