"""Archiver decisions (pure): join, sampling, incident windows with the 'before' ring, retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.archive_policy import (
    ArchivePolicy,
    Item,
    JoinBuffer,
    PolicyConfig,
    RetentionEntry,
    plan_retention,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def item(seq: int, score: float = 0.01, camera: str = "cam-a", fps: float = 2.0) -> Item:
    return Item(camera=camera, seq=seq, capture_time=T0 + timedelta(seconds=seq / fps), score=score, payload=b"jpg")


def cfg(**kw: float) -> PolicyConfig:
    base = dict(low_score=0.3, sample_every=10, before_s=5.0, after_s=5.0, incident_max_s=60.0, ring_max_frames=1000, ring_slack_s=15.0)
    base.update(kw)
    return PolicyConfig(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------- join


def test_join_pairs_in_either_order_and_expires_unpaired() -> None:
    j: JoinBuffer[str, str] = JoinBuffer(max_items=3, ttl_s=10.0)
    assert j.add_frame(("c", 1), "f1", now=0.0) is None
    assert j.add_classification(("c", 1), "k1", now=0.5) == ("f1", "k1")
    assert j.add_classification(("c", 2), "k2", now=1.0) is None  # classification first
    assert j.add_frame(("c", 2), "f2", now=1.1) == ("f2", "k2")
    assert len(j) == 0
    # a frame whose classification never comes (dead-lettered) expires after ttl
    j.add_frame(("c", 3), "f3", now=2.0)
    j.expire(now=12.5)
    assert j.pending_frames == 0 and j.expired_frames == 1
    assert j.add_classification(("c", 3), "k3", now=13.0) is None
    # size bound: oldest goes first
    for s in range(10, 15):
        j.add_frame(("c", s), f"f{s}", now=20.0)
    assert j.pending_frames == 3
    assert j.add_classification(("c", 14), "k14", now=20.1) == ("f14", "k14")
    assert j.add_classification(("c", 10), "k10", now=20.1) is None  # evicted


# ---------------------------------------------------------------- sampling


def test_ordinary_frames_sampled_one_in_n_and_high_scores_always_kept() -> None:
    p = ArchivePolicy(cfg(sample_every=10, low_score=0.3))
    kept: dict[int, str] = {}
    for s in range(100):
        score = 0.9 if s in (13, 57) else (0.3 if s == 71 else 0.05)
        for d in p.on_frame(item(s, score)):
            kept[d.item.seq] = d.reason
    assert {s for s, r in kept.items() if r == "sample"} == set(range(0, 100, 10))
    assert {s for s, r in kept.items() if r == "low_score"} == {13, 57, 71}  # >= low_score, inclusive
    assert len(kept) == 13


def test_sampling_is_by_sequence_so_redelivery_decides_the_same() -> None:
    a, b = ArchivePolicy(cfg()), ArchivePolicy(cfg())
    first = [d.item.seq for s in range(40) for d in a.on_frame(item(s))]
    again = [d.item.seq for s in range(40) for d in b.on_frame(item(s))]
    assert first == again == [0, 10, 20, 30]


# ---------------------------------------------------------------- incidents


def test_incident_keeps_before_window_from_ring_and_every_frame_until_after_clear() -> None:
    p = ArchivePolicy(cfg(before_s=5.0, after_s=5.0, sample_every=1000, low_score=0.5))
    decisions = []
    for s in range(1, 60):  # 2 fps, seq 1..59; spill scores from seq 40
        decisions += p.on_frame(item(s, 0.9 if s >= 40 else 0.05))
    # alert arrives late: first suspicious frame seq 40 (t=20 s), confirmed at seq 42
    decisions += p.on_alert(
        incident_id="inc-1",
        camera="cam-a",
        state="confirmed",
        first_seen=T0 + timedelta(seconds=20),
        confirmed_at=T0 + timedelta(seconds=21),
    )
    for s in range(60, 100):
        decisions += p.on_frame(item(s, 0.9 if s < 80 else 0.05))
    decisions += p.on_alert(
        incident_id="inc-1",
        camera="cam-a",
        state="cleared",
        first_seen=T0 + timedelta(seconds=20),
        confirmed_at=T0 + timedelta(seconds=21),
        cleared_at=T0 + timedelta(seconds=45),  # seq 90
    )
    for s in range(100, 140):
        decisions += p.on_frame(item(s))
    inc = {d.item.seq for d in decisions if d.incident_id == "inc-1"}
    # window: first_seen - 5 s (seq 30) .. cleared + 5 s (seq 100)
    assert inc == set(range(30, 101))
    # frames 40..59 were first stored as high scores, then re-indexed into the incident (no 2nd write)
    reindexed = {d.item.seq for d in decisions if d.already_stored}
    assert reindexed == set(range(40, 60))
    # nothing after the window
    assert not any(d.item.seq > 100 for d in decisions)
    # nothing before the window (no samples, low scores)
    assert not any(d.item.seq < 30 for d in decisions)


def test_before_window_is_bounded_by_the_ring() -> None:
    p = ArchivePolicy(cfg(before_s=100.0, ring_max_frames=4, sample_every=1000))
    for s in range(20):
        p.on_frame(item(s))
    assert p.ring_size("cam-a") == 4
    out = p.on_alert(
        incident_id="i", camera="cam-a", state="confirmed", first_seen=T0 + timedelta(seconds=9), confirmed_at=T0 + timedelta(seconds=9.5)
    )
    assert sorted(d.item.seq for d in out) == [16, 17, 18, 19]


def test_open_incident_stops_keeping_everything_after_incident_max() -> None:
    p = ArchivePolicy(cfg(incident_max_s=10.0, sample_every=1000, before_s=0))
    p.on_alert(incident_id="i", camera="cam-a", state="confirmed", first_seen=T0, confirmed_at=T0)
    kept = [d.item.seq for s in range(0, 60) for d in p.on_frame(item(s))]
    assert kept == list(range(0, 21))  # 10 s at 2 fps, inclusive


def test_incidents_are_per_camera() -> None:
    p = ArchivePolicy(cfg(sample_every=1000))
    for s in range(10):
        p.on_frame(item(s, camera="cam-a"))
        p.on_frame(item(s, camera="cam-b"))
    out = p.on_alert(incident_id="i", camera="cam-b", state="confirmed", first_seen=T0 + timedelta(seconds=3), confirmed_at=T0 + timedelta(seconds=4))
    assert {d.item.camera for d in out} == {"cam-b"}
    assert [d.item.seq for d in p.on_frame(item(10, camera="cam-a"))] == []
    assert [d.item.seq for d in p.on_frame(item(10, camera="cam-b"))] == [10]


# ---------------------------------------------------------------- retention


def _e(name: str, days_old: float, size: int = 100, labelled: bool = False) -> RetentionEntry:
    return RetentionEntry(name, T0 - timedelta(days=days_old), size, labelled)


def test_retention_by_age_keeps_labelled_frames() -> None:
    entries = [_e("old", 40), _e("old-labelled", 40, labelled=True), _e("new", 1)]
    plan = plan_retention(entries, now=T0, max_age_days=30, max_bytes=10**9)
    assert plan.delete == ["old"] and plan.by_rule == {"age": 1, "size": 0}
    plan = plan_retention(entries, now=T0, max_age_days=30, max_bytes=10**9, keep_labelled=False)
    assert sorted(plan.delete) == ["old", "old-labelled"]


def test_retention_by_size_deletes_oldest_unlabelled_first_then_labelled() -> None:
    entries = [
        _e("lab-oldest", 9, labelled=True),
        _e("u-old", 8),
        _e("u-mid", 5),
        _e("lab-new", 1, labelled=True),
        _e("u-new", 0.5),
    ]
    plan = plan_retention(entries, now=T0, max_age_days=30, max_bytes=250)
    assert plan.delete == ["u-old", "u-mid", "u-new"]
    assert plan.kept_bytes == 200 and plan.deleted_bytes == 300
    plan = plan_retention(entries, now=T0, max_age_days=30, max_bytes=150)
    assert plan.delete == ["u-old", "u-mid", "u-new", "lab-oldest"]
    assert plan.kept_bytes == 100
    assert plan_retention(entries, now=T0, max_age_days=30, max_bytes=500).delete == []
