"""Replay sources: manifest timing, archive order, video sampling (no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer

from tests.helpers.tiny_model import clean_jpeg
from training.replay_commands import load_frames
from training.replay_sources import from_manifest, from_video

START = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)


def test_manifest_without_times_is_spaced_by_fps_per_camera_in_line_order(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(clean_jpeg())
    rows = [
        {"file": "a.jpg", "label": "spill"},
        {"file": "a.jpg", "label": "clean", "camera": "c2"},
        {"file": "a.jpg", "label": "weird"},
        {"file": "a.jpg", "label": "clean", "camera": "c3", "capture_time": "2026-05-01T09:00:00Z", "seq": 77},
        {"file": "a.jpg", "label": "spill", "split": "val"},
    ]
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fr = from_manifest(m, fps=4.0, start=START)
    got = [(f.camera, f.seq, (f.capture_time - START).total_seconds(), f.label) for f in fr]
    assert got == [
        ("c3", 77, -3600.0, "clean"),  # its own time and seq
        ("replay", 0, 0.0, "spill"),
        ("c2", 0, 0.0, "clean"),
        ("replay", 1, 0.25, None),  # an unknown label is no label
        ("replay", 2, 0.5, "spill"),
    ]
    assert fr[0].load() == clean_jpeg()
    assert [f.seq for f in from_manifest(m, fps=4.0, start=START, split="val")] == [0]


def test_video_is_sampled_at_fps_by_its_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 360))
    for i in range(50):  # 5 s at 10 fps
        w.write(np.full((360, 640, 3), i * 5, np.uint8))
    w.release()
    fr = from_video(path, fps=2.0, camera="dock", start=START, max_width=320)
    assert len(fr) == 10
    assert [round((f.capture_time - START).total_seconds(), 2) for f in fr] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    img = cv2.imdecode(np.frombuffer(fr[3].load(), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (180, 320, 3) and fr[3].camera == "dock" and fr[3].label is None
    assert fr[3].capture_time - fr[2].capture_time == timedelta(milliseconds=500)


def test_exactly_one_source(tmp_path: Path) -> None:
    with pytest.raises(typer.BadParameter):
        load_frames(None, None, None, 2.0)
    with pytest.raises(typer.BadParameter):
        load_frames(tmp_path, tmp_path / "m.jsonl", None, 2.0)


def test_replay_without_a_model_fails_clearly_before_starting_anything(tmp_path: Path) -> None:
    from spillwatch.settings import Settings
    from training.replay import ReplayError, ReplayOptions, run_replay
    from training.replay_sources import SourceFrame

    frames = [SourceFrame("c", 0, START, None, clean_jpeg)]
    with pytest.raises(ReplayError, match="not found"):
        run_replay(frames, Settings(), ReplayOptions(model=tmp_path / "missing.onnx", progress=False, work_dir=tmp_path / "w"))
    with pytest.raises(ReplayError, match="no frames"):
        run_replay([], Settings(), ReplayOptions(progress=False))
