"""Clips: a fixed camera where a spill appears at a known onset and grows while people walk by."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from training.synth import distractors as dis
from training.synth.scene import Scene


@dataclass
class ClipTruth:
    path: str
    fps: float
    n_frames: int
    width: int
    height: int
    seed: int
    spill: bool
    onset_s: float | None  # first frame time with liquid drawn; None for a clean clip
    labels: list[str]  # per frame: "spill" from the onset on (the liquid is physically there)
    visible_px: list[int]  # per frame: spill pixels visible (people may hide part of it)
    bboxes: list[list[int] | None]  # per frame: [x0, y0, x1, y1] of the visible spill mask, or None
    meta: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["frames"] = self.n_frames
        vis = [i for i, v in enumerate(self.visible_px) if v > 0]
        d["first_visible_frame"] = vis[0] if vis else None
        return d


def dump_truth(d: dict) -> str:
    """JSON with one top-level key per line (per-frame lists stay on one line each)."""
    lines = [f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in d.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


@dataclass
class _Walker:
    t0: float
    speed: float  # px/s (signed)
    x0: float
    y: float
    person: dis.Person


def _walkers(rng: np.random.Generator, scene: Scene, seconds: float) -> list[_Walker]:
    W = scene.W
    out = []
    t = rng.uniform(0, 2)
    while t < seconds:
        direction = 1 if rng.random() < 0.5 else -1
        y = scene.H * rng.uniform(0.55, 1.0) if scene.view == "ceiling" else float(
            np.clip(scene.H * rng.uniform(0.5, 1.02), 0, scene.H * 1.05))
        h = scene.person_height(W / 2, y, rng.uniform(0.6, 1.1))
        person = dis.random_person(rng, 0, y, h)
        speed = direction * W * rng.uniform(0.12, 0.25)
        out.append(_Walker(t, speed, -0.1 * W if direction > 0 else 1.1 * W, y, person))
        t += rng.uniform(3, 7)
    return out


def render_clip(
    path: Path,
    *,
    seed: int,
    spill: bool,
    seconds: float = 20,
    fps: float = 5,
    size: tuple[int, int] = (640, 480),
    onset_s: float | None = None,
    grow_s: float = 5.0,
    liquid: str | None = None,
    floor: str | None = None,
    view: str | None = None,
    lighting: str | None = None,
    distractors: list[str] | None = None,
    write_masks: bool = False,
    scene: Scene | None = None,
) -> ClipTruth:
    """Render an mp4 (fourcc mp4v) and a sidecar JSON `<path>.json` with the ground truth.

    The same seed with spill=True/False gives the same scene (floor, lights, people), with and
    without the liquid. The spill appears at `onset_s` (default 30 % of the clip) and grows
    over `grow_s` seconds to its full size. write_masks=True also writes each frame's spill mask
    as `<stem>_masks/frame_NNNNN.png` (0/255) for frames with visible liquid. A prebuilt `scene`
    (training/synth/lookalike.py) replaces the one the seed would build (the seed still drives
    the people and the noise).
    """
    path = Path(path)
    W, H = size
    n = int(round(seconds * fps))
    if scene is None:
        scene = Scene.build(seed, W, H, spill=True, liquid=liquid, floor=floor, view=view, lighting=lighting,
                            shape="pool", distractors=distractors, clip_mode=True)
    elif (scene.W, scene.H) != (W, H):
        raise ValueError(f"scene is {scene.W}x{scene.H}, clip size {W}x{H}")
    if not spill:
        scene.liquid = None
        scene.liquid_field = None
    rng = np.random.default_rng([seed, 0xC11F])
    walkers = _walkers(rng, scene, seconds)
    if spill and onset_s is None:
        onset_s = round(seconds * 0.3, 3)
    if not spill:
        onset_s = None
    flicker = scene.lighting == "flicker"
    start = dt.datetime(2026, 3, 18, 9, 0, 0) + dt.timedelta(seconds=int(rng.integers(0, 8 * 3600)))
    fmax = float(scene.liquid_field.max()) if scene.liquid_field is not None else 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open video writer for {path}")
    labels: list[str] = []
    visible: list[int] = []
    boxes: list[list[int] | None] = []
    try:
        for i in range(n):
            t = i / fps
            level = None
            if spill and onset_s is not None and t >= onset_s - 1e-9:
                g = min(1.0, (t - onset_s) / grow_s) if grow_s > 0 else 1.0
                g = 1 - (1 - g) ** 2  # fast start, slowing down as it spreads
                level = (fmax - 0.02) + (0.0 - (fmax - 0.02)) * g
            people = []
            for w in walkers:
                if t >= w.t0:
                    x = w.x0 + w.speed * (t - w.t0)
                    if -0.2 * W < x < 1.2 * W:
                        p = dis.Person(**{**w.person.__dict__, "x": x, "phase": w.person.phase + (t - w.t0) * 6.0})
                        people.append(p)
            gain = 1.0 + (0.06 * np.sin(t * 7.3) + 0.03 * rng.standard_normal() if flicker else 0.01 * rng.standard_normal())
            stamp = (start + dt.timedelta(seconds=int(t))).strftime("%Y-%m-%d %H:%M:%S")
            img, mask = scene.render(level=level, people=people, gain=float(gain), stamp_text=stamp, frame_seed=seed * 100003 + i)
            writer.write(img)
            if write_masks and mask.any():
                mdir = path.parent / f"{path.stem}_masks"
                mdir.mkdir(exist_ok=True)
                cv2.imwrite(str(mdir / f"frame_{i:05d}.png"), mask * 255)
            labels.append("spill" if level is not None else "clean")
            visible.append(int(mask.sum()))
            if mask.any():
                ys, xs = np.nonzero(mask)
                boxes.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
            else:
                boxes.append(None)
    finally:
        writer.release()
    truth = ClipTruth(
        path=path.name, fps=float(fps), n_frames=n, width=W, height=H, seed=seed, spill=spill,
        onset_s=onset_s, labels=labels, visible_px=visible, bboxes=boxes,
        meta={"floor": scene.floor.name, "liquid": scene.liquid.name if (spill and scene.liquid) else None,
              "lighting": scene.lighting, "view": scene.view, "distractors": scene.distractors + ["person"],
              "grow_s": grow_s, "synthetic": True, "generator": "training.synth"},
    )
    path.with_suffix(".json").write_text(dump_truth(truth.to_json()))
    return truth
