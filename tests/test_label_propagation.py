"""Operator labels -> archived frames (incident inheritance, frame labels, newest wins, ack sync)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from processors.archive_labels import label_frames, label_incident, sync_ack_labels
from spillwatch.archive import load_archive
from tests.helpers.archive_builder import Incident, build_camera


def _archive(root: Path) -> None:
    # cam-a: a real spill visible seq 40..89; incident first_seen 40, confirmed 43, cleared 92
    build_camera(root, "cam-a", 120, set(range(40, 90)), [Incident("inc-a", 40, 43, 92)])
    # cam-b: the model fires on seq 20..29 (nothing there): false alarm, cleared at 35
    build_camera(root, "cam-b", 60, set(range(20, 30)), [Incident("inc-b", 20, 22, 35)])


def _by(root: Path) -> dict[tuple[str, int], str | None]:
    return {(f.camera, f.seq): f.label for f in load_archive(root)}


def test_incident_frames_inherit_the_verdict(tmp_path: Path) -> None:
    _archive(tmp_path)
    before = _by(tmp_path)
    assert set(before.values()) == {None}  # nothing labelled until an operator says so

    res = label_incident(tmp_path, "inc-a", True, by="op")
    # window = first_seen - 3 s .. cleared + 3 s = seq 34..98 at 2 fps
    assert res.frames == 65 and res.spill_frames == 53 and res.unlabelled_context_frames == 12
    res_b = label_incident(tmp_path, "inc-b", False, by="op")
    assert res_b.frames == 42 - 14 and res_b.clean_frames == res_b.frames  # seq 14..41

    labels = _by(tmp_path)
    for seq in range(40, 93):
        assert labels[("cam-a", seq)] == "spill"
    for seq in (*range(34, 40), *range(93, 99)):  # context before first_seen / after clearing
        assert labels[("cam-a", seq)] is None
    for seq in range(14, 42):
        assert labels[("cam-b", seq)] == "clean"  # false alarm: hard negatives
    # ordinary samples outside incidents stay unlabelled
    samples = [f for f in load_archive(tmp_path) if f.reason == "sample"]
    assert samples and all(f.label is None for f in samples)


def test_frame_labels_win_and_newest_label_wins(tmp_path: Path) -> None:
    _archive(tmp_path)
    label_incident(tmp_path, "inc-b", False)
    sample = next(f for f in load_archive(tmp_path) if f.reason == "sample" and f.camera == "cam-a")
    assert label_frames(tmp_path, [sample.file], False) == 1
    inc_frame = next(f for f in load_archive(tmp_path) if f.incident_id == "inc-b" and f.seq == 25)
    label_frames(tmp_path, [inc_frame.file], True)
    labels = {f.file: (f.label, f.label_source) for f in load_archive(tmp_path)}
    assert labels[sample.file] == ("clean", "frame")
    assert labels[inc_frame.file] == ("spill", "frame")  # a frame label beats its incident's
    # the operator changes their mind about inc-b: the newest verdict wins
    label_incident(tmp_path, "inc-b", True)
    after = _by(tmp_path)
    assert after[("cam-b", 24)] == "spill" and after[("cam-b", 14)] is None


def _cli() -> typer.Typer:
    """The real ``spillwatch`` command line."""
    from spillwatch.cli import app

    return app


def test_label_cli_and_unknown_incident(tmp_path: Path) -> None:
    app = _cli()
    _archive(tmp_path)
    runner = CliRunner()
    # --no-learn: the archive alone (suppression learning needs Redis: tests/test_suppression_e2e.py)
    r = runner.invoke(app, ["label", "inc-b", "--false", "--archive", str(tmp_path), "--by", "night-shift", "--json", "--no-learn"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["label"] == "clean" and out["clean_frames"] == 28
    r = runner.invoke(app, ["label", "no-such-incident", "--true", "--archive", str(tmp_path), "--no-learn"])
    assert r.exit_code == 0 and "incident no-such-incident labelled spill: 0 archived frame(s)" in r.stdout
    assert "no frame of this incident" in r.stderr
    r = runner.invoke(app, ["label", "inc-a", "--archive", str(tmp_path)])  # verdict is required
    assert r.exit_code != 0


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_ack_labels_from_redis_are_copied_once(tmp_path: Path, local_stack: object, redis_client: object) -> None:
    """The ack endpoint's label (alerting's ack hash in Redis) reaches the archive's frames."""
    from alerting.acks import AckRequest, AckStore

    _archive(tmp_path)
    prefix = f"t:ack-sync-{tmp_path.name}"
    store = AckStore(redis_client, prefix, ttl_s=600)
    store.ack("inc-b", AckRequest(by="guard", label="false"))
    store.ack("inc-a", AckRequest(by="guard"))  # an ack without a verdict labels nothing
    assert sync_ack_labels(redis_client, prefix, tmp_path) == 1
    assert sync_ack_labels(redis_client, prefix, tmp_path) == 0  # idempotent
    labels = _by(tmp_path)
    assert labels[("cam-b", 20)] == "clean" and labels[("cam-a", 50)] is None
    # other namespaces' acks are not read
    AckStore(redis_client, prefix + "-other", ttl_s=600).ack("inc-a", AckRequest(by="x", label="true"))
    assert sync_ack_labels(redis_client, prefix, tmp_path) == 0


def test_ground_truth_stored_with_frames_beats_the_incident_verdict(tmp_path: Path) -> None:
    """Frames that carried a label (replay / synthetic clips) keep it; operator frame labels still win."""
    from processors.archive_policy import ArchivePolicy, Item, PolicyConfig
    from processors.archive_store import ArchiveStore
    from spillwatch.archive import IncidentRecord, append_incident
    from tests.helpers.archive_builder import t_of

    policy = ArchivePolicy(PolicyConfig(low_score=0.5, sample_every=1000, before_s=2.0, after_s=2.0))
    store = ArchiveStore(tmp_path)
    for seq in range(20):
        truth = "spill" if 8 <= seq < 14 else "clean"
        store.write(policy.on_frame(Item("cam-t", seq, t_of(seq), 0.9 if 6 <= seq < 14 else 0.1, "m", truth, b"x%d" % seq)))
    kw = dict(incident_id="inc-t", camera="cam-t", state="cleared", first_seen=t_of(6), confirmed_at=t_of(8), cleared_at=t_of(15))
    append_incident(tmp_path, IncidentRecord(**kw, before_s=2.0, after_s=2.0))  # type: ignore[arg-type]
    store.write(policy.on_alert(**kw))  # type: ignore[arg-type]
    label_incident(tmp_path, "inc-t", True)
    labels = _by(tmp_path)
    assert [labels[("cam-t", s)] for s in (6, 7, 8, 13, 14)] == ["clean", "clean", "spill", "spill", "clean"]
    label_frames(tmp_path, [next(f.file for f in load_archive(tmp_path) if f.seq == 7)], True)
    assert _by(tmp_path)[("cam-t", 7)] == "spill"
