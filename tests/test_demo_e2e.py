"""End to end: the bundled clips through the real broker, Redis, workers, aggregator and alerting
with the shipped model — the spill clip pages once per channel, fast; the clean clip never."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.demo import bundled_clips, run_demo
from spillwatch.settings import DEFAULT_MODEL, AggregatorSettings


@pytest.mark.integration  # run_demo starts its own broker and Redis
@pytest.mark.slow  # two 24 s clips played in real time
@pytest.mark.timeout(240)
def test_demo_spill_pages_once_per_channel_and_clean_never(tmp_path: Path) -> None:
    assert DEFAULT_MODEL.is_file(), "the shipped model is missing"
    report_path = tmp_path / "report.json"
    report = run_demo(report_path, workers=1, speed=1.0, run_dir=tmp_path / "run")
    assert json.loads(report_path.read_text()) == report

    spill, clean = report["cameras"]["demo-spill"], report["cameras"]["demo-clean"]
    for cam in (spill, clean):
        assert cam["frames_published"] >= 40  # ~24 s clips sampled at 2 fps
        assert cam["frames_classified"] == cam["frames_published"]

    # A clean floor never pages.
    assert clean["incidents"] == [] and clean["pages"] == []

    # The spill pages exactly once per channel, for one incident.
    assert len(spill["incidents"]) == 1
    confirmed = [p for p in spill["pages"] if p["state"] == "confirmed"]
    assert sorted(p["channel"] for p in confirmed) == ["console", "webhook"]
    assert report["webhook_pages_received"] == len([p for p in spill["pages"] if p["channel"] == "webhook"])

    # ...within onset + confirmation window + 2 s.
    agg = AggregatorSettings()
    window_s = agg.window / 2.0  # cameras sample at 2 fps
    assert spill["onset_to_page_s"] is not None
    assert spill["onset_to_page_s"] <= window_s + 2.0, spill


def test_bundled_clips_have_ground_truth() -> None:
    clips = {c.camera_id: c for c in bundled_clips()}
    assert clips["demo-spill"].onset_s is not None and clips["demo-spill"].onset_s > 0
    assert clips["demo-clean"].onset_s is None
    assert all(c.duration_s > 10 for c in clips.values())
