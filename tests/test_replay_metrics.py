"""Replay metrics (pure): spill segments, incident recall, false incidents per camera-hour, time to page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from training.replay_metrics import (
    ObservedIncident,
    ReplayedFrame,
    camera_hours,
    frame_level,
    incident_metrics,
    spill_segments,
)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def t(seq: int, fps: float = 2.0) -> datetime:
    return T0 + timedelta(seconds=seq / fps)


def frames(camera: str, n: int, spill: set[int], unlabelled: set[int] = frozenset(), scores: dict[int, float] | None = None) -> list[ReplayedFrame]:  # type: ignore[assignment]
    out = []
    for s in range(n):
        label = None if s in unlabelled else ("spill" if s in spill else "clean")
        out.append(ReplayedFrame(camera, s, t(s), label, (scores or {}).get(s, 0.9 if s in spill else 0.1)))
    return out


def inc(iid: str, camera: str, first: int, confirmed: int, lat: float | None = None) -> ObservedIncident:
    return ObservedIncident(iid, camera, t(first), t(confirmed), lat)


def test_segments_split_on_clean_frames_and_gaps_not_on_unlabelled() -> None:
    fs = frames("a", 100, set(range(10, 20)) | set(range(30, 50)), unlabelled={15, 40})
    segs = spill_segments(fs)
    assert [(s.first_seq, s.last_seq, s.frames) for s in segs] == [(10, 19, 9), (30, 49, 19)]
    # a capture gap longer than max_gap_s ends a segment
    gap = [ReplayedFrame("b", 0, T0, "spill"), ReplayedFrame("b", 1, T0 + timedelta(seconds=100), "spill")]
    assert len(spill_segments(gap, max_gap_s=30)) == 2 and len(spill_segments(gap, max_gap_s=300)) == 1


def test_incident_recall_false_incidents_and_time_to_page() -> None:
    fs = frames("a", 7200, set(range(100, 200)) | set(range(3000, 3100))) + frames("b", 7200, set())
    incidents = [
        inc("i1", "a", 101, 104, lat=1.5),  # detects segment 1, 2 s after its first spill frame
        inc("i1b", "a", 190, 205, lat=2.5),  # confirms 2.5 s after segment 1 ends: within tolerance
        inc("i2", "b", 500, 503),  # camera b never has a spill: false
        inc("i3", "a", 5000, 5003),  # camera a, no spill there: false
    ]
    m = incident_metrics(fs, incidents, tolerance_s=5.0)
    assert m["spill_segments"] == 2 and m["detected_segments"] == 1 and m["recall"] == 0.5
    assert m["false_incidents"] == 2 and set(m["false_incident_ids"]) == {"i2", "i3"}
    assert m["camera_hours"] == pytest.approx(2.0, abs=1e-3)  # two cameras x 3600 s
    assert m["false_incidents_per_camera_hour"] == pytest.approx(1.0, abs=1e-3)
    assert m["time_to_page_s"]["min"] == pytest.approx(2.0)
    assert m["page_latency_wall_s"]["max"] == pytest.approx(2.5)
    seg1 = m["segments"][0]
    assert seg1["detected"] and seg1["incidents"] == ["i1", "i1b"] and seg1["time_to_page_s"] == pytest.approx(2.0)
    # an incident just outside the tolerance is false
    late = incident_metrics(fs, [inc("late", "a", 190, 230)], tolerance_s=5.0)
    assert late["false_incidents"] == 1 and late["detected_segments"] == 0


def test_unlabelled_replay_gives_null_incident_rates() -> None:
    fs = [ReplayedFrame("v", s, t(s), None, 0.5) for s in range(10)]
    m = incident_metrics(fs, [inc("x", "v", 1, 3)])
    assert m["labelled"] is False and m["recall"] is None and m["false_incidents_per_camera_hour"] is None
    fl = frame_level(fs, 0.5)
    assert fl["n"] == 0 and fl["recall"] is None and fl["n_unlabelled"] == 10


def test_frame_level_uses_the_evaluate_keys() -> None:
    fs = frames("a", 10, {0, 1, 2, 3}, scores={0: 0.9, 1: 0.8, 2: 0.4, 3: 0.95, 4: 0.7, 5: 0.1})
    fs.append(ReplayedFrame("a", 99, t(99), "spill", None))  # dead-lettered: not counted
    m = frame_level(fs, 0.5)
    for key in ("n", "threshold", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "f1", "specificity",
                "npv", "fpr", "fnr", "log_loss", "roc_auc", "pr_auc"):
        assert key in m
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 5) and m["n_unclassified"] == 1
    assert m["recall"] == pytest.approx(0.75) and m["precision"] == pytest.approx(0.75)


def test_camera_hours_counts_one_frame_interval() -> None:
    assert camera_hours(frames("a", 2, set())) == pytest.approx(1.0 / 3600)
