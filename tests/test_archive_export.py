"""Archive -> manifest export (format, time-block split, stability), retention on disk, and the
training loader reading the export."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from processors.archive_labels import label_frames, label_incident
from processors.archive_store import apply_retention
from spillwatch.archive import load_archive
from tests.helpers.archive_builder import T0, Incident, build_camera
from training.archive_export import (
    SplitConfig,
    archive_to_manifest_records,
    export_manifest,
    resolve_archive_manifest,
)

MANIFEST_KEYS = {"file", "label", "source", "sequence", "liquids", "polygons", "split"}


def _archive(root: Path) -> None:
    build_camera(root, "cam-a", 240, set(range(40, 90)), [Incident("inc-a", 40, 43, 92)])
    build_camera(root, "cam-b", 240, set(range(150, 160)), [Incident("inc-b", 150, 152, 165)])
    label_incident(root, "inc-a", True)
    label_incident(root, "inc-b", False)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_export_writes_the_shared_manifest_format(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _archive(root)
    out = tmp_path / "exports" / "deep" / "manifest.jsonl"
    summary = export_manifest(root, out, SplitConfig(val_fraction=0.0))
    rows = _read(out)
    labelled = [f for f in load_archive(root) if f.label]
    assert len(rows) == summary.n == len(labelled) == 53 + 28  # inc-a spill span (seq 40..92) + inc-b window (seq 144..171)
    assert summary.unlabelled_skipped == len(load_archive(root)) - len(labelled)
    for r in rows:
        assert MANIFEST_KEYS <= r.keys()
        assert r["source"] == "archive" and r["sequence"] == r["camera"]
        assert r["liquids"] == [] and r["polygons"] == []
        assert (out.parent / r["file"]).is_file()  # relative to the manifest's folder
        assert r["capture_time"].endswith("Z") and r["model_version"] == "tiny-test-1"
    assert {(r["camera"], r["label"]) for r in rows} == {("cam-a", "spill"), ("cam-b", "clean")}
    assert {r["incident_id"] for r in rows} == {"inc-a", "inc-b"}
    assert summary.by_split_label == {"train/clean": 28, "train/spill": 53}


def test_time_block_split_never_puts_near_duplicates_on_both_sides(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _archive(root)
    # label every ordinary sample too, so many small blocks exist
    label_frames(root, [f.file for f in load_archive(root) if f.reason == "sample"], False)
    cfg = SplitConfig(block_s=20.0, val_fraction=0.5, guard_s=5.0, seed="t")
    rows = archive_to_manifest_records(root, split=cfg)
    assert {r["split"] for r in rows} == {"train", "val"}
    for cam in ("cam-a", "cam-b"):
        cam_rows = [r for r in rows if r["camera"] == cam]
        train_t = [_t(r) for r in cam_rows if r["split"] == "train"]
        for r in cam_rows:
            if r["split"] == "val":
                assert all(abs(_t(r) - t) > 5.0 for t in train_t), r
    # an incident is never split
    for inc in ("inc-a", "inc-b"):
        assert len({r["split"] for r in rows if r["incident_id"] == inc}) == 1
    # whole cameras can be held out
    rows2 = archive_to_manifest_records(root, split=SplitConfig(val_cameras=frozenset({"cam-b"}), val_fraction=0.0))
    assert {r["split"] for r in rows2 if r["camera"] == "cam-b"} == {"val"}
    assert {r["split"] for r in rows2 if r["camera"] == "cam-a"} == {"train"}


def _t(r: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(r["capture_time"].replace("Z", "+00:00")).timestamp()


def test_split_is_stable_as_the_archive_grows(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _archive(root)
    cfg = SplitConfig(block_s=30.0, val_fraction=0.5, guard_s=0.0)
    first = {r["file"]: r["split"] for r in archive_to_manifest_records(root, split=cfg)}
    # a day later: another incident on cam-a, labelled
    build_camera(root, "cam-a", 100, set(range(10, 30)), [Incident("inc-c", 10, 12, 35)], t0=T0 + timedelta(days=1))
    label_incident(root, "inc-c", True)
    second = {r["file"]: r["split"] for r in archive_to_manifest_records(root, split=cfg)}
    assert len(second) > len(first)
    assert all(second[f] == s for f, s in first.items())


def test_retention_on_disk_then_export_skips_deleted_frames(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _archive(root)
    frames = load_archive(root)
    total = sum(f.bytes for f in frames)
    labelled_bytes = sum(f.bytes for f in frames if f.label)
    res = apply_retention(root, max_age_days=3650, max_bytes=labelled_bytes, now=T0 + timedelta(days=1))
    after = load_archive(root)
    assert res.plan.by_rule["size"] == len(frames) - len(after) > 0
    assert sum(f.bytes for f in after) <= labelled_bytes < total
    assert all(f.label for f in after)  # unlabelled frames went first; every label survived
    assert not any((root / f).exists() for f in res.plan.delete)
    # age: everything older than 1 day goes, except labelled frames
    res = apply_retention(root, max_age_days=1, max_bytes=10**12, now=T0 + timedelta(days=5))
    assert res.plan.by_rule["age"] == 0 and len(load_archive(root)) == len(after)
    res = apply_retention(root, max_age_days=1, max_bytes=10**12, keep_labelled=False, now=T0 + timedelta(days=5))
    assert load_archive(root) == [] and res.removed_index_files  # index of that date dropped
    assert export_manifest(root, tmp_path / "m.jsonl").n == 0


def test_training_loader_reads_the_export(tmp_path: Path) -> None:
    from training.datasets import load_manifest, load_record_image

    root = tmp_path / "archive"
    _archive(root)
    manifest = resolve_archive_manifest(root, tmp_path / "run")
    assert manifest == tmp_path / "run" / "archive-manifest.jsonl"
    assert resolve_archive_manifest(manifest, tmp_path / "elsewhere") == manifest  # a manifest passes through
    recs = load_manifest(manifest)
    assert len(recs) == 81 and {r.label for r in recs} == {"spill", "clean"}
    img = load_record_image(recs[0], target=64)
    assert img.image.shape[2] == 3 and img.image.shape[0] > 0
    # a false alarm is a hard negative with a known (empty) mask; archive spills have no polygons
    neg = next(r for r in recs if r.label == "clean")
    assert load_record_image(neg, target=64).mask is not None and not neg.polygons


def test_export_cli(tmp_path: Path) -> None:
    from spillwatch.cli import app

    root = tmp_path / "archive"
    _archive(root)
    out = tmp_path / "m" / "manifest.jsonl"
    r = CliRunner().invoke(app, ["archive", "export", "--archive", str(root), "--manifest", str(out), "--val-camera", "cam-b", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["n"] == 81 and summary["by_split_label"] == {"train/spill": 53, "val/clean": 28}
    assert len(_read(out)) == 81
