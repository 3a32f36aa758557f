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


def inc(iid: str, camera: str, first: int, confirmed: int, lat: float | None = None, cleared: int | None = None) -> ObservedIncident:
    return ObservedIncident(iid, camera, t(first), t(confirmed), lat, t(cleared) if cleared is not None else None)


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
        inc("i1", "a", 101, 104, lat=1.5, cleared=210),  # detects segment 1, 2 s after its first spill frame
        inc("i1b", "a", 190, 205, lat=2.5, cleared=212),  # confirms 2.5 s after segment 1 ends: within tolerance
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
    seg1, seg2 = m["segments"]
    assert seg1["detected"] and seg1["incidents"] == ["i1", "i1b"] and seg1["time_to_page_s"] == pytest.approx(2.0)
    assert not seg2["detected"] and seg2["open_incidents"] == []  # i1 and i1b cleared long before it
    # an incident just outside the tolerance is false
    late = incident_metrics(fs, [inc("late", "a", 190, 230, cleared=240)], tolerance_s=5.0)
    assert late["false_incidents"] == 1 and late["detected_segments"] == 0


def test_spill_segments_under_one_open_incident_are_detected_by_it() -> None:
    """A spill seen as four segments (split by one or two frames labelled clean) while one incident
    stays open: every segment is detected by it, one incident, no false one."""
    spill = set(range(20, 40)) | set(range(41, 60)) | set(range(62, 80)) | set(range(81, 100))
    fs = frames("a", 140, spill)
    assert [(s.first_seq, s.last_seq) for s in spill_segments(fs)] == [(20, 39), (41, 59), (62, 79), (81, 99)]
    for cleared in (None, 110):  # never cleared during the replay, or cleared after the last segment
        m = incident_metrics(fs, [inc("one", "a", 20, 22, cleared=cleared)])
        assert (m["spill_segments"], m["detected_segments"], m["recall"]) == (4, 4, 1.0)
        assert m["incidents"] == 1 and m["false_incidents"] == 0
        assert m["segments_under_open_incident"] == 3
        assert [s["open_incidents"] for s in m["segments"]] == [[], ["one"], ["one"], ["one"]]
        # time to page: the segment it confirmed in; the others were paged before they began
        assert [s["time_to_page_s"] for s in m["segments"]] == [pytest.approx(1.0), None, None, None]
        assert m["time_to_page_s"]["max"] == pytest.approx(1.0)


def test_a_segment_after_the_incident_cleared_needs_its_own_incident() -> None:
    fs = frames("a", 140, set(range(20, 40)) | set(range(60, 80)))
    first = inc("i1", "a", 20, 22, cleared=45)  # cleared before the second segment starts (seq 60)
    miss = incident_metrics(fs, [first])
    assert (miss["detected_segments"], miss["recall"]) == (1, 0.5)
    assert [s["detected"] for s in miss["segments"]] == [True, False]
    hit = incident_metrics(fs, [first, inc("i2", "a", 60, 62, cleared=85)])
    assert (hit["detected_segments"], hit["recall"], hit["false_incidents"]) == (2, 1.0, 0)
    assert [s["incidents"] for s in hit["segments"]] == [["i1"], ["i2"]]
    assert [s["open_incidents"] for s in hit["segments"]] == [[], []]
    # cleared exactly when the next segment starts: no longer open then
    edge = incident_metrics(fs, [inc("i1", "a", 20, 22, cleared=60)])
    assert edge["recall"] == 0.5


def test_an_incident_open_when_a_spill_starts_is_not_a_false_incident() -> None:
    fs = frames("a", 100, set(range(50, 70)))
    m = incident_metrics(fs, [inc("early", "a", 10, 12)])  # confirmed on clean frames, still open at seq 50
    assert (m["recall"], m["false_incidents"]) == (1.0, 0)
    closed = incident_metrics(fs, [inc("early", "a", 10, 12, cleared=30)])
    assert (closed["recall"], closed["false_incident_ids"]) == (0.0, ["early"])


def test_unlabelled_replay_gives_null_incident_rates_but_counts_camera_hours() -> None:
    fs = [ReplayedFrame("v", s, t(s), None, 0.5) for s in range(7200)]  # one hour at 2 fps
    m = incident_metrics(fs, [inc("x", "v", 1, 3)])
    assert m["labelled"] is False and m["recall"] is None and m["false_incidents_per_camera_hour"] is None
    assert m["camera_hours"] == pytest.approx(1.0) and m["labelled_camera_hours"] == 0.0
    assert m["incidents"] == 1 and m["false_incidents"] == 0  # nothing to judge it by
    fl = frame_level(fs, 0.5)
    assert fl["n"] == 0 and fl["recall"] is None and fl["n_unlabelled"] == 7200


def test_false_incidents_per_camera_hour_of_the_labelled_cameras() -> None:
    """Labelled and unlabelled cameras in one replay: camera-hours count both, the false-incident
    rate only the labelled one (an incident on an unlabelled camera cannot be judged)."""
    fs = frames("lab", 7200, set()) + [ReplayedFrame("unl", s, t(s), None, 0.5) for s in range(7200)]
    m = incident_metrics(fs, [inc("f1", "lab", 100, 103), inc("f2", "lab", 900, 903), inc("u", "unl", 5, 8)])
    assert m["camera_hours"] == pytest.approx(2.0) and m["labelled_camera_hours"] == pytest.approx(1.0)
    assert m["false_incident_ids"] == ["f1", "f2"] and m["false_incidents_per_camera_hour"] == pytest.approx(2.0)


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


def test_report_takes_the_clearing_time_from_the_cleared_alert() -> None:
    """build_report (pure): the incident's ``cleared`` alert ends it; before that it covers the
    spill that comes back after a clean frame."""
    from spillwatch.events import AlertState, Evidence, SpillAlert
    from spillwatch.settings import Settings
    from training.replay import Collected, ReplayOptions, build_report
    from training.replay_sources import SourceFrame

    spill = set(range(20, 40)) | set(range(41, 60))
    source = [SourceFrame("a", s, t(s), "spill" if s in spill else "clean", lambda: b"") for s in range(80)]

    def alert(state: AlertState, cleared: int | None = None) -> SpillAlert:
        return SpillAlert(incident_id="one", camera_id="a", state=state, first_seen=t(20), confirmed_at=t(22),
                          cleared_at=t(cleared) if cleared is not None else None, evidence=Evidence(confirming_seq=22))

    def report(*alerts: SpillAlert) -> dict:
        got = Collected(scores={(f.camera, f.seq): 0.9 if f.seq in spill else 0.1 for f in source}, alerts=list(alerts))
        return build_report(source, got, [], {}, Settings(), ReplayOptions(progress=False), "r1", 0.5, "v1",
                            wall_s=1.0, cleaned={}, stats={})["incidents"]

    assert report(alert(AlertState.CONFIRMED))["recall"] == 1.0  # never cleared: open over both
    assert report(alert(AlertState.CONFIRMED), alert(AlertState.CLEARED, cleared=65))["recall"] == 1.0
    cleared_between = report(alert(AlertState.CONFIRMED), alert(AlertState.CLEARED, cleared=40))
    assert (cleared_between["recall"], cleared_between["incidents"]) == (0.5, 1)
