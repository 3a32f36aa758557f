"""Learning from the archive when Redis no longer keeps an incident's frames (``spillwatch suppressions
add INCIDENT --archive``): the archived frames of the look-alike clip, run through the shipped model,
give the same learned cells as the live path (the stain's two cells), and a spill clip's frames give
looks that the learned entry does not match on those cells."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from processors.archive_policy import ArchivePolicy, Item, PolicyConfig
from processors.archive_store import ArchiveStore
from spillwatch.archive import IncidentRecord, append_incident
from spillwatch.model import SpillModel
from spillwatch.settings import DEFAULT_MODEL
from spillwatch.suppression import learn_cells, match, plan_false_alarm
from spillwatch.suppression_store import observations_from_archive
from tests.helpers.lookalike import STAIN_CELLS, render_clips
from training.replay_sources import SourceFrame

CAMERA = "lobby-1"


def archive_incident(root: Path, incident: str, frames: list[SourceFrame]) -> None:
    """The frames stored as the archiver would around an incident that spans them."""
    policy = ArchivePolicy(PolicyConfig(low_score=0.5, sample_every=1000, before_s=2.0, after_s=2.0))
    store = ArchiveStore(root)
    for f in frames:
        store.write(policy.on_frame(Item(CAMERA, f.seq, f.capture_time, 0.9, "m", None, f.load())))
    kw = dict(incident_id=incident, camera=CAMERA, state="cleared", first_seen=frames[0].capture_time,
              confirmed_at=frames[2].capture_time, cleared_at=frames[-1].capture_time)
    append_incident(root, IncidentRecord(**kw, before_s=2.0, after_s=2.0))  # type: ignore[arg-type]
    store.write(policy.on_alert(**kw))  # type: ignore[arg-type]


@pytest.mark.timeout(300)
def test_archive_frames_teach_the_same_cells_and_a_spill_there_still_escapes(tmp_path: Path) -> None:
    clips = render_clips(tmp_path / "clips", CAMERA)
    archive_incident(tmp_path / "archive", "inc-lookalike", clips["lookalike"])
    model = SpillModel.load(DEFAULT_MODEL, threads=1)
    obs = observations_from_archive(tmp_path / "archive", "inc-lookalike", model)
    assert len(obs) >= 30 and {o.camera_id for o in obs} == {CAMERA}
    grid, cells = learn_cells(obs, margin=10.0, min_frames=2)
    stain = STAIN_CELLS[grid]
    assert grid == (model.card.map_size, model.card.map_size) and {c.cell for c in cells} == stain
    plan = plan_false_alarm("inc-lookalike", obs, [], by="op", source="cli", now=obs[-1].capture_time, margin=10.0,
                            min_frames=2, ttl=timedelta(days=30), warn_area=0.1, max_area=0.25)
    assert plan.entry is not None and plan.outcome.status == "created"

    juice = tmp_path / "juice"
    on_spot = clips["spill_on_spot"]
    archive_incident(juice, "inc-juice", on_spot[14:])  # the juice is visible from 7 s on
    spill = observations_from_archive(juice, "inc-juice", model)
    on_cells = [o for o in spill if {lk[0] for lk in o.looks} & stain]
    assert on_cells
    suppressed = [o for o in on_cells if match([plan.entry], [lk for lk in o.looks if lk[0] in stain], grid, 10.0)]
    # same place, another look: not suppressed once the juice has spread over the spot (it grows for
    # 2 s from 6 s on); while it arrives, a cell still mostly showing the stain can match its look
    grown = on_spot[16].seq  # 8 s
    assert [o for o in on_cells if o.seq >= grown]
    assert all(o.seq < grown for o in suppressed), [o.seq for o in suppressed]
