"""Replay proof of change gating: the static synthetic clips through the real pipeline, gating on and off.

    python -m processors.gating_replay --out var/bench/gating-replay.json [--work var/bench/gating-replay]

Writes two labelled synthetic clips (a ``<clip>.json`` sidecar with per-frame labels, as
training/synth clips have) from the bundled clips, the way the bench's static scene and
tests/test_gating_latency.py build them:

* ``static-onset``: a still scene with sensor noise and flicker; the bundled spill clip's spill
  appears at 6 s (its growth frames), then stays;
* ``static-slow``: the same spill revealed pixel by pixel over 3 minutes (no frame differs from the
  previous one by more than the gate's threshold).

Each is replayed with ``spillwatch replay --video ... --local`` (its own broker, Redis, worker and
aggregator) twice, ``SPILLWATCH_GATING__ENABLED=true`` and ``false``; the JSON gives, per clip and
setting, the time from the first spill frame to the confirmed incident (capture times,
``time_to_page_s``), the incidents and false incidents.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from processors.bench import load_clip
from processors.bench_scenes import build_static, decode, noisy_variants

FPS = 2.0


def onset_clip(spill: list[bytes], clean: list[bytes], clip_fps: float, onset_s: float, seconds: float = 40.0
               ) -> tuple[list[np.ndarray], list[str]]:
    static = build_static(spill, clean, fps=clip_fps, onset_s=onset_s, grow_s=5.0)
    frames = [decode(static.frame(0, True, i / FPS, i)) for i in range(int(seconds * FPS))]
    return frames, ["spill" if i / FPS >= onset_s else "clean" for i in range(len(frames))]


def slow_clip(spill: list[bytes], clip_fps: float, onset_s: float, grow_s: float = 180.0
              ) -> tuple[list[np.ndarray], list[str]]:
    first = int(round(onset_s * clip_fps))
    before, after = decode(spill[first - 1]).astype(np.int16), decode(spill[first + 30]).astype(np.int16)
    h = before.shape[0]
    mask = np.abs(after - before).max(axis=2) > 25
    mask[: int(h * 0.45)] = False
    ys, xs = np.nonzero(mask)
    order = np.argsort((ys - ys.mean()) ** 2 + ((xs - xs.mean()) / 1.6) ** 2)
    lead, n = int(5 * FPS), int(grow_s * FPS)
    frames, labels = [], []
    for i in range(lead + n + int(10 * FPS)):
        k = int(len(order) * min(1.0, max(0, i - lead) / n))
        img = before.copy()
        sel = order[:k]
        img[ys[sel], xs[sel]] = after[ys[sel], xs[sel]]
        frames.append(decode(noisy_variants(img.astype(np.uint8), 1, seed=i)[0]))
        labels.append("spill" if k > 0 else "clean")
    return frames, labels


def write_clip(path: Path, frames: list[np.ndarray], labels: list[str]) -> Path:
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    path.with_suffix(".json").write_text(json.dumps({"fps": FPS, "labels": labels}))
    return path


def replay(video: Path, camera: str, gating: bool, out: Path, work: Path) -> dict[str, Any]:
    env = dict(os.environ, SPILLWATCH_GATING__ENABLED="true" if gating else "false")
    cmd = [sys.executable, "-m", "spillwatch.cli", "replay", "--video", str(video), "--camera", camera, "--fps", str(FPS),
           "--local", "--out", str(out), "--work-dir", str(work), "--timeout", "600"]
    subprocess.run(cmd, env=env, check=True)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("var/bench/gating-replay.json"))
    ap.add_argument("--work", type=Path, default=Path("var/bench/gating-replay"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    spill, clean = load_clip("spill", 480), load_clip("clean", 480)
    onset = spill.onset_s or 6.0
    clips = {
        "static-onset": write_clip(args.work / "static-onset.mp4", *onset_clip(spill.jpegs, clean.jpegs, spill.fps, onset)),
        "static-slow": write_clip(args.work / "static-slow.mp4", *slow_clip(spill.jpegs, spill.fps, onset)),
    }
    result: dict[str, Any] = {}
    for name, video in clips.items():
        for gating in (True, False):
            tag = f"{name}-{'gating' if gating else 'no-gating'}"
            report = replay(video, name, gating, args.work / f"{tag}.json", args.work / tag)
            inc = report["incidents"]
            result[tag] = {
                "frames": report["replay"]["frames"], "classified": report["replay"]["classified"],
                "model_version": report["replay"]["model_version"],
                "spill_segments": inc["spill_segments"], "detected_segments": inc["detected_segments"],
                "incidents": inc["incidents"], "false_incidents": inc["false_incidents"],
                "time_to_page_s": inc["time_to_page_s"],
            }
            print(tag, json.dumps(result[tag]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":  # pragma: no cover
    main()
