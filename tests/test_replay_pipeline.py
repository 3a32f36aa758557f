"""Replay through the REAL pipeline (broker, classifier worker, aggregator, alerting in dry run,
Redis), with a tiny real ONNX model: the expected incident and metrics, the same result at another
speed, and isolation from a live namespace on the same broker and Redis."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from spillwatch.kafka import topic_specs
from spillwatch.redis_keys import RedisKeys
from spillwatch.settings import Settings
from tests.helpers import read_to_end
from tests.helpers.replay import write_sequence
from tests.helpers.tiny_model import build_tiny_model
from training.replay import ReplayOptions, run_replay
from training.replay_sources import from_manifest

pytestmark = [pytest.mark.integration]


def _check_report(rep: dict[str, Any]) -> None:
    r, f, i = rep["replay"], rep["frames"], rep["incidents"]
    assert r["frames"] == r["published"] == r["classified"] == 90 and r["dead_lettered"] == 0
    assert (f["tp"], f["fn"], f["fp"], f["tn"]) == (25, 0, 0, 65)
    assert f["recall"] == 1.0 and f["precision"] == 1.0
    assert i["spill_segments"] == 1 and i["detected_segments"] == 1 and i["recall"] == 1.0
    assert i["incidents"] == 1 and i["false_incidents"] == 0 and i["false_incidents_per_camera_hour"] == 0.0
    # defaults: k=3 of n=5 -> confirmed on the 3rd spill frame, 1.0 s after the first at 2 fps
    assert i["time_to_page_s"]["min"] == pytest.approx(1.0)
    confirmed = [a for a in rep["alerts"] if a["state"] == "confirmed"]
    assert len(confirmed) == 1 and confirmed[0]["camera"] == "cam-r"
    assert [p for p in rep["pages"] if p["state"] == "confirmed"] and all(p["dry_run"] for p in rep["pages"])
    assert rep["per_camera"]["cam-q"]["incidents"] == []


@pytest.mark.timeout(300)
def test_replay_of_a_labelled_sequence_gives_the_expected_incident(stack_settings: Settings, tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "model")
    manifest = write_sequence(tmp_path / "seq")
    frames = from_manifest(manifest, fps=2.0)
    rep = run_replay(frames, stack_settings, ReplayOptions(model=model, speed=0, progress=False, timeout_s=240, work_dir=tmp_path / "work"))
    _check_report(rep)
    assert rep["replay"]["cleaned"]["topics"] == len(topic_specs(stack_settings)) and rep["replay"]["cleaned"]["redis_keys"] > 0


@pytest.mark.timeout(300)
def test_replay_beside_a_live_namespace_pages_nothing_live_and_leaves_its_state(
    stack_settings: Settings, tmp_path: Path, redis_client: Any
) -> None:
    """A live alerting service (real channel: console) runs on the live namespace while a replay of a
    spill runs on the same broker and Redis at 4x real time: no live page, live Redis state
    byte-identical, no record on the live topics; the replay still finds its incident."""
    from alerting.service import AlertingService

    live = stack_settings.model_copy(
        update={"alerting": stack_settings.alerting.model_copy(update={"dry_run": False, "channels": ["console"]})}
    )
    lp = live.redis.key_prefix
    redis_client.set(RedisKeys(lp).agg_state("cam-r"), json.dumps({"camera_id": "cam-r", "phase": "idle", "last_seq": 7}))
    redis_client.hset(f"{lp}:ack:inc-live", mapping={"incident_id": "inc-live", "by": "op", "at": "2026-01-01T00:00:00+00:00"})

    def snapshot() -> dict[bytes, bytes]:
        return {k: redis_client.dump(k) for k in redis_client.scan_iter(match=f"{lp}:*")}

    model = build_tiny_model(tmp_path / "model")
    frames = from_manifest(write_sequence(tmp_path / "seq"), fps=2.0)
    service = AlertingService(live)
    service.start()
    try:
        before = snapshot()
        rep = run_replay(frames, live, ReplayOptions(model=model, speed=4.0, progress=False, timeout_s=240, work_dir=tmp_path / "work"))
        live_pages = service.store.recent_pages()
        after = snapshot()
    finally:
        service.stop()
    _check_report(rep)  # same incident at 4x real time as at full speed
    assert rep["replay"]["topic_prefix"].startswith(live.kafka.topic_prefix + "replay-")
    assert live_pages == []
    assert before == after and len(before) >= 2
    t = live.topics
    for topic in (t.frames, t.classifications, t.spill_alerts):
        assert read_to_end(live, topic) == []  # every record the topic holds, read: none
    # the replay cleaned up after itself: no key of its namespace left
    assert not list(redis_client.scan_iter(match=f"{rep['replay']['redis_prefix']}:*"))


@pytest.mark.timeout(300)
def test_replay_of_an_archive_keeps_capture_times_and_labels(stack_settings: Settings, tmp_path: Path) -> None:
    """An archive (incident window + samples, labelled by an operator) replayed with its original
    capture times and sequence numbers: the incident is found again, frame metrics follow the labels."""
    from processors.archive_labels import label_incident
    from tests.helpers.archive_builder import T0, Incident, build_camera
    from training.replay_sources import from_archive

    root = tmp_path / "archive"
    build_camera(root, "cam-a", 120, set(range(40, 90)), [Incident("inc-a", 40, 43, 92)])
    label_incident(root, "inc-a", True)
    frames = from_archive(root)
    assert frames[0].capture_time == T0 and [f.seq for f in frames][:5] == [0, 10, 20, 30, 34]
    model = build_tiny_model(tmp_path / "model")
    rep = run_replay(frames, stack_settings, ReplayOptions(model=model, progress=False, timeout_s=240, work_dir=tmp_path / "work"))
    f, i = rep["frames"], rep["incidents"]
    assert rep["replay"]["classified"] == len(frames)
    # labelled: seq 40..92 spill (90..92 show no more red: the model misses them); the rest unlabelled
    assert (f["tp"], f["fn"], f["fp"], f["tn"]) == (50, 3, 0, 0) and f["n_unlabelled"] == len(frames) - 53
    assert i["spill_segments"] == 1 and i["recall"] == 1.0 and i["false_incidents"] == 0
    assert i["time_to_page_s"]["min"] == pytest.approx(1.0)  # confirmed on seq 42, first spill frame seq 40
    confirmed = [a for a in rep["alerts"] if a["state"] == "confirmed"]
    assert len(confirmed) == 1 and confirmed[0]["first_seen"] == (T0 + timedelta(seconds=20)).isoformat()
