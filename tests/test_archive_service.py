"""The archiver service against the real local broker: frames + classifications + an alert in,
the right frames on disk and in the index out (including out-of-order arrival and bad records)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from processors.archiver import Archiver
from spillwatch.archive import load_archive, read_incidents
from spillwatch.events import AlertState, Classification, FrameHeader, SpillAlert, encode_frame
from spillwatch.settings import Settings
from tests.helpers import wait_until
from tests.helpers.archive_builder import T0
from tests.helpers.tiny_model import clean_jpeg, spill_jpeg

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _t(seq: int):  # noqa: ANN202
    return T0 + timedelta(seconds=seq / 2)


def test_archiver_stores_incident_window_high_scores_and_samples(stack_settings: Settings, tmp_path: Path) -> None:
    from spillwatch.kafka import make_producer

    s = stack_settings.model_copy(
        update={
            "archive": stack_settings.archive.model_copy(
                update={
                    "root": str(tmp_path / "archive"),
                    "low_score": 0.5,
                    "sample_every": 10,
                    "incident_before_s": 3.0,
                    "incident_after_s": 3.0,
                    "group_id": f"{stack_settings.kafka.topic_prefix}archiver",
                    "retention_interval_s": 3600.0,
                }
            )
        }
    )
    t = s.topics
    arch = Archiver(s)
    ready = threading.Event()
    th = threading.Thread(target=arch.run, kwargs={"ready": ready}, daemon=True)
    th.start()
    try:
        assert ready.wait(30), "archiver got no partitions"
        prod = make_producer(s)
        spill, clean = spill_jpeg(), clean_jpeg()
        spill_seqs = set(range(30, 50))
        for seq in range(80):
            key = b"cam-x"
            hdr = FrameHeader(camera_id="cam-x", seq=seq, capture_time=_t(seq), width=320, height=240)
            cls = Classification(
                camera_id="cam-x", seq=seq, capture_time=_t(seq), spill_prob=0.9 if seq in spill_seqs else 0.05, model_version="m1"
            )
            if seq % 7 == 0:  # classification before its frame: the join must still pair them
                prod.send(t.classifications, key=key, value=cls.to_bytes())
                prod.send(t.frames, key=key, value=encode_frame(hdr, spill if seq in spill_seqs else clean))
            else:
                prod.send(t.frames, key=key, value=encode_frame(hdr, spill if seq in spill_seqs else clean))
                prod.send(t.classifications, key=key, value=cls.to_bytes())
            if seq == 33:
                alert = SpillAlert(incident_id="inc-x", camera_id="cam-x", state=AlertState.CONFIRMED, first_seen=_t(30), confirmed_at=_t(32))
                prod.send(t.spill_alerts, key=key, value=alert.to_bytes())
            if seq == 55:
                alert = SpillAlert(
                    incident_id="inc-x", camera_id="cam-x", state=AlertState.CLEARED, first_seen=_t(30), confirmed_at=_t(32), cleared_at=_t(54)
                )
                prod.send(t.spill_alerts, key=key, value=alert.to_bytes())
        prod.send(t.classifications, key=b"cam-x", value=b"{not json")  # skipped, counted, no crash
        prod.send(t.frames, key=b"cam-x", value=b"garbage")
        prod.flush()
        prod.close()
        wait_until(lambda: arch.stats.classifications >= 81 and arch.stats.frames >= 81, timeout_s=30)
    finally:
        arch.stop()
        th.join(15)
    frames = {f.seq: f for f in load_archive(tmp_path / "archive")}
    incident = {seq for seq, f in frames.items() if f.incident_id == "inc-x"}
    assert incident == set(range(24, 61))  # first_seen 30 - 3 s .. cleared 54 + 3 s
    # before the incident: 1-in-10 samples only. (After it, frames consumed before the clearing
    # alert arrived may be stored too — topics are read independently — but are no incident frames.)
    assert {seq for seq, f in frames.items() if f.incident_id is None and seq < 24} == {0, 10, 20}
    assert {70} <= {seq for seq, f in frames.items() if f.incident_id is None}
    assert frames[40].reason == "incident" and frames[40].score == pytest.approx(0.9)
    assert all((tmp_path / "archive" / f.file).read_bytes() in (spill_jpeg(), clean_jpeg()) for f in frames.values())
    assert frames[35].file == f"cam-x/{T0:%Y-%m-%d}/35.jpg"
    assert read_incidents(tmp_path / "archive")["inc-x"].cleared_at == _t(54)
    assert arch.stats.skipped.get(t.classifications) == 1 and arch.stats.skipped.get(t.frames) == 1
