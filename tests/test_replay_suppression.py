"""Replay reports with and without learned suppression (pure parts): the per-camera false-incident
rates, the with/without section of the report, the offline recomputation the replay runs
(``spillwatch aggregate --without-suppression``), and sidecar labels of a ``--video`` replay."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from processors.offline import confirm_offline
from spillwatch.events import Classification, SuppressedCells
from spillwatch.settings import Settings
from training.replay import Collected, ReplayOptions, build_report
from training.replay_metrics import ObservedIncident, ReplayedFrame, incident_metrics, suppression_report
from training.replay_sources import SourceFrame

T0 = datetime(2026, 3, 18, 9, 0, tzinfo=UTC)
ENTRY = "sup-00000000abcd"


def stain_frames(camera: str, n: int = 40, first_seq: int = 0) -> list[Classification]:
    """A persistent look-alike on cells 62-63 (p 0.97), suppressed by ENTRY after the 10th frame."""
    flat = [13] * 100
    flat[62] = flat[63] = 240
    smap = [flat[r * 10:(r + 1) * 10] for r in range(10)]
    return [
        Classification(camera_id=camera, seq=first_seq + i, capture_time=T0 + timedelta(seconds=i / 2), spill_prob=0.97,
                       spill_map=smap, model_version="m", suppressed=[SuppressedCells(entry=ENTRY, cells=[62, 63])] if i >= 10 else None)
        for i in range(n)
    ]


def test_offline_recompute_with_and_without_suppression() -> None:
    s = Settings()
    rows = stain_frames("cam-a")
    with_ = confirm_offline(rows, s, model_threshold=0.85, map_threshold=0.5)
    without = confirm_offline(rows, s, model_threshold=0.85, map_threshold=0.5, honour_suppression=False)
    assert [a.state.value for a in with_] == ["confirmed", "cleared"]  # confirmed before the entry, then suppressed: cleared
    assert [a.state.value for a in without] == ["confirmed"]  # the look-alike holds it open to the end
    assert with_[0].incident_id == without[0].incident_id


def test_aggregate_command_reads_classifications_and_writes_alerts(tmp_path: Path) -> None:
    from spillwatch.cli import app

    src = tmp_path / "c.jsonl"
    src.write_text("".join(c.model_dump_json() + "\n" for c in stain_frames("cam-a")))
    out = tmp_path / "alerts.json"
    r = CliRunner().invoke(app, ["aggregate", str(src), "--out", str(out), "--without-suppression"])
    assert r.exit_code == 0, r.output
    assert [a["state"] for a in json.loads(out.read_text())] == ["confirmed"]
    src.write_text("not json\n")
    r = CliRunner().invoke(app, ["aggregate", str(src), "--out", str(out)])
    assert r.exit_code == 2 and "c.jsonl:1" in r.stderr


def test_report_gives_false_incidents_per_camera_hour_with_and_without() -> None:
    frames = [ReplayedFrame(cam, i, T0 + timedelta(seconds=i / 2), "clean", 0.97) for cam in ("cam-a", "cam-b") for i in range(40)]
    false_a = ObservedIncident("inc-a", "cam-a", T0, T0 + timedelta(seconds=1))
    with_ = incident_metrics(frames, [])
    without = incident_metrics(frames, [false_a])
    assert without["false_by_camera"]["cam-a"]["false_incidents"] == 1
    assert without["false_by_camera"]["cam-a"]["false_incidents_per_camera_hour"] == 180.0  # one per 20 s
    assert without["false_by_camera"]["cam-b"]["false_incidents_per_camera_hour"] == 0.0
    rep = suppression_report({("cam-a", i): [ENTRY] for i in range(10, 40)}, with_, without, copied=1, recomputed=True)
    assert rep["frames_suppressed"] == 30 and rep["frames_by_entry"] == {ENTRY: 30}
    assert rep["false_incidents_per_camera_hour"] == {"with": 0.0, "without": 90.0}  # 1 over two cameras' 40 s
    assert rep["per_camera"]["cam-a"]["false_incidents_per_camera_hour"] == {"with": 0.0, "without": 180.0}
    assert rep["per_camera"]["cam-b"]["false_incidents"] == {"with": 0, "without": 0}


def test_build_report_uses_the_recomputed_alerts_for_without() -> None:
    rows = stain_frames("cam-a")
    source = [SourceFrame("cam-a", c.seq, c.capture_time, "clean", lambda: b"") for c in rows]
    s = Settings()
    with_alerts = confirm_offline(rows, s, model_threshold=0.85, map_threshold=0.5)
    without = confirm_offline(rows, s, model_threshold=0.85, map_threshold=0.5, honour_suppression=False)
    got = Collected(scores={("cam-a", c.seq): c.spill_prob for c in rows}, alerts=with_alerts,
                    suppressed={("cam-a", c.seq): [ENTRY] for c in rows if c.suppressed})
    rep = build_report(source, got, [], {}, s, ReplayOptions(progress=False), "r1", 0.85, "m", wall_s=1.0, cleaned={}, stats={},
                       without_suppression=without, suppressions_copied=1)
    sup = rep["suppression"]
    assert sup["incidents"] == {"with": 1, "without": 1} and sup["frames_suppressed"] == 30
    plain = build_report(source, Collected(scores=got.scores, alerts=without), [], {}, s, ReplayOptions(progress=False), "r1",
                         0.85, "m", wall_s=1.0, cleaned={}, stats={})
    assert plain["suppression"]["recomputed_without"] is False
    assert plain["suppression"]["incidents"] == {"with": 1, "without": 1}


def test_video_replay_takes_labels_from_the_clip_sidecar(tmp_path: Path) -> None:
    from tests.helpers.media import make_video
    from training.replay_sources import from_video

    video = tmp_path / "clip.mp4"
    make_video(video, n_frames=10, fps=2.0)
    assert {f.label for f in from_video(video, fps=2.0)} == {None}  # no sidecar: unlabelled
    video.with_suffix(".json").write_text(json.dumps({"fps": 2.0, "labels": ["clean"] * 4 + ["spill"] * 6}))
    assert [f.label for f in from_video(video, fps=2.0)] == ["clean"] * 4 + ["spill"] * 6
