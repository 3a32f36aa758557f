"""``spillwatch bench faults`` itself: two scenarios end to end on a private embedded stack (the
real model and the bundled clips), each must meet its targets (slow: ~1.5 min)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(400)
def test_bench_faults_hostile_corpus_and_worker_kill_meet_targets(tmp_path: Path) -> None:
    from devstack.faults import run_faults

    out = tmp_path / "faults.json"
    result = run_faults(out, only=["hostile corpus", "worker SIGKILL"], run_dir=tmp_path / "run")
    assert json.loads(out.read_text()) == result
    rows = {r["scenario"]: r for r in result["rows"]}
    for name, r in rows.items():
        assert r["ok"], (name, r)
        assert r["lost"] == 0 and r["duplicate"] == 0 and r["phantom"] == 0 and r["confirmed"] == r["expected"] > 0
    hostile = rows["hostile corpus"]
    assert hostile["extra"]["dead_lettered"] == hostile["extra"]["hostile"]
    assert hostile["extra"]["worker_rss_bombs_mb"] < 32  # the bombs never reach a decoder
