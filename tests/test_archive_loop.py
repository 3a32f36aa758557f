"""The whole loop on the real broker and Redis: frames through the real worker and aggregator (a
replay namespace kept open), the archiver beside them, an operator label, export, evaluation."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from processors.archive_labels import label_incident
from processors.archiver import Archiver
from spillwatch.archive import load_archive
from spillwatch.settings import Settings
from tests.helpers import wait_until
from tests.helpers.replay import SPILL, write_sequence
from tests.helpers.tiny_model import build_tiny_model
from training.archive_export import export_manifest
from training.replay import ReplayOptions, cleanup_namespace, replay_settings, run_replay
from training.replay_sources import from_manifest

pytestmark = [pytest.mark.integration]


@pytest.mark.timeout(300)
def test_pipeline_alerts_drive_the_archive_then_label_export_evaluate(stack_settings: Settings, tmp_path: Path) -> None:
    import redis

    from spillwatch.kafka import create_topics
    from training.evaluate import evaluate

    model = build_tiny_model(tmp_path / "model")
    frames = from_manifest(write_sequence(tmp_path / "seq"), fps=2.0)
    opts = ReplayOptions(model=model, progress=False, timeout_s=240, keep=True, replay_id="loop1", work_dir=tmp_path / "work")
    ns = replay_settings(stack_settings, "loop1", ["cam-r", "cam-q"], opts, tmp_path / "work", len(frames))
    ns = ns.model_copy(
        update={
            "archive": ns.archive.model_copy(
                update={"root": str(tmp_path / "archive"), "sample_every": 10, "low_score": 0.5,
                        "incident_before_s": 2.0, "incident_after_s": 2.0, "group_id": f"{ns.kafka.topic_prefix}archiver"}
            )
        }
    )
    create_topics(ns, partitions=4)
    arch = Archiver(ns)
    th = threading.Thread(target=arch.run, daemon=True)
    th.start()
    rds = redis.Redis.from_url(ns.redis.url)
    try:
        rep = run_replay(frames, stack_settings, opts)
        wait_until(lambda: arch.stats.classifications >= 90 and arch.stats.alerts >= 2, timeout_s=30)
        wait_until(lambda: arch.join.pending_frames == 0, timeout_s=10)
    finally:
        arch.stop()
        th.join(15)
        cleanup_namespace(ns, rds)
        rds.close()
    confirmed = [a for a in rep["alerts"] if a["state"] == "confirmed"]
    assert len(confirmed) == 1
    iid = confirmed[0]["incident_id"]
    archived = {(f.camera, f.seq): f for f in load_archive(tmp_path / "archive")}
    inc = sorted(s for (cam, s), f in archived.items() if f.incident_id == iid)
    # the aggregator's first suspicious frame is the first spill frame (20); context 2 s = 4 frames before
    assert inc[0] == SPILL[0] - 4 and set(SPILL) <= set(inc)
    assert {s for (cam, s) in archived if cam == "cam-q"} == {0, 10, 20}  # clean camera: 1-in-10 samples only
    # the replayed frames carried their ground truth (frame header label): the archive keeps it and
    # it wins over the incident's inherited verdict, so the context frames are exactly labelled
    res = label_incident(tmp_path / "archive", iid, True, by="test")
    assert res.spill_frames == len(SPILL) and res.clean_frames == res.frames - len(SPILL) > 0
    summary = export_manifest(tmp_path / "archive", tmp_path / "export" / "manifest.jsonl")
    assert summary.unlabelled_skipped == 0 and summary.n == len(archived)
    ev = evaluate(tmp_path / "export" / "manifest.jsonl", model, progress=False)
    assert ev["n"] == len(archived)
    assert (ev["tp"], ev["fn"], ev["fp"]) == (len(SPILL), 0, 0) and ev["tn"] == len(archived) - len(SPILL)
