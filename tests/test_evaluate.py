"""``spillwatch evaluate`` on a small manifest built from synthetic frames (never real data)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spillwatch.settings import DEFAULT_MODEL
from training import metrics
from training.datasets import write_synthetic_manifest

KEYS = {"n", "threshold", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "f1", "specificity", "npv",
        "fpr", "fnr", "log_loss", "roc_auc", "pr_auc"}


@pytest.mark.timeout(120)
def test_evaluate_cli_writes_metrics_and_report(tmp_path: Path) -> None:
    from spillwatch.cli import app

    mp = write_synthetic_manifest(tmp_path / "set", 12, seed=21, p_spill=0.5)
    (tmp_path / "set" / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with open(mp, "a") as f:
        f.write(json.dumps({"file": "images/broken.jpg", "label": "clean", "polygons": []}) + "\n")
    out = tmp_path / "m.json"
    rep = tmp_path / "report"
    try:
        r = CliRunner().invoke(app, ["evaluate", "--manifest", str(mp), "--model", str(DEFAULT_MODEL), "--out", str(out),
                                     "--report-dir", str(rep), "--threshold", "0.5"])
    finally:  # the CLI bound the log output to the runner's (now closed) stderr
        from spillwatch.logs import configure_logging

        configure_logging()
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert KEYS <= set(res)
    assert res["n"] == 12 and res["n_skipped"] == 1 and res["threshold"] == 0.5
    labels = [json.loads(x)["label"] for x in mp.read_text().splitlines()[:12]]
    assert res["tp"] + res["fn"] == labels.count("spill")
    # the figures are those of the per-frame predictions written to the report
    rows = list(csv.DictReader(open(rep / "predictions.csv")))
    y = [1 if row["label"] == "spill" else 0 for row in rows]
    p = [float(row["spill_prob"]) for row in rows]
    again = metrics.summary(y, p, 0.5)
    for k in ("tp", "fp", "tn", "fn"):
        assert again[k] == res[k]
    assert again["roc_auc"] == pytest.approx(res["roc_auc"], abs=1e-5) if res["roc_auc"] is not None else again["roc_auc"] is None
    for f in ("roc.csv", "roc.json", "pr.csv", "pr.json", "roc.png", "pr.png", "confusion.png", "summary.md"):
        assert (rep / f).is_file() and (rep / f).stat().st_size > 0
    assert "examples/" in (rep / "summary.md").read_text()


@pytest.mark.timeout(60)
def test_one_class_manifest_gives_null_auc(tmp_path: Path) -> None:
    from training.evaluate import evaluate

    mp = write_synthetic_manifest(tmp_path / "clean", 4, seed=3, p_spill=0.0)
    res = evaluate(mp, DEFAULT_MODEL, progress=False)
    assert res["roc_auc"] is None and res["recall"] is None and res["pr_auc"] is None
    assert res["n"] == 4 and res["tp"] == 0 and res["fn"] == 0


def _with_source(manifest: Path, source: str) -> Path:
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps({**x, "source": source}) + "\n" for x in lines))
    return manifest


@pytest.mark.timeout(120)
def test_evaluate_several_manifests_reports_each_source(tmp_path: Path) -> None:
    from spillwatch.cli import app
    from training.evaluate import evaluate

    a = _with_source(write_synthetic_manifest(tmp_path / "a", 6, seed=31, p_spill=0.5), "place-a")
    b = _with_source(write_synthetic_manifest(tmp_path / "b", 5, seed=32, p_spill=0.0, split="train"), "rooms")
    one_a, one_b = evaluate(a, DEFAULT_MODEL, progress=False), evaluate(b, DEFAULT_MODEL, progress=False)
    both = evaluate([a, b], DEFAULT_MODEL, progress=False)
    assert both["n"] == 11 and both["tp"] + both["fp"] == one_a["tp"] + one_a["fp"] + one_b["tp"] + one_b["fp"]
    assert set(both["sources"]) == {"place-a/val", "rooms/train"} and set(both["datasets"]) == {"a", "b"}
    rooms = both["sources"]["rooms/train"]
    assert (rooms["n"], rooms["clean"], rooms["spill"], rooms["recall"]) == (5, 5, 0, None)
    assert rooms["fpr"] == one_b["fpr"]
    # a clean-only source is ranked against the spill frames of the other source
    assert (rooms["roc_auc"] is None) == (one_a["tp"] + one_a["fn"] == 0)
    assert both["sources"]["place-a/val"]["recall"] == one_a["recall"]

    # the CLI takes the manifests repeated, or a list file (paths relative to it), and prints the table
    listing = tmp_path / "dev.txt"
    listing.write_text("# DEV sets\na/manifest.jsonl\n\nb/manifest.jsonl\n")
    out = tmp_path / "m.json"
    try:
        r = CliRunner().invoke(app, ["evaluate", "--manifest", str(listing), "--model", str(DEFAULT_MODEL), "--out", str(out)])
        r2 = CliRunner().invoke(app, ["evaluate", "--manifest", str(a), "--manifest", str(b), "--model", str(DEFAULT_MODEL),
                                      "--out", str(tmp_path / "m2.json"), "--split", "val"])
    finally:
        from spillwatch.logs import configure_logging

        configure_logging()
    assert r.exit_code == 0, r.output
    assert "| rooms/train | 5 | 0 | 5 |" in r.output
    # every rate comes with its exact 95 % interval (in the table and in the JSON)
    lo, hi = rooms["fpr_interval"]
    assert rooms["recall_interval"] is None and lo <= rooms["fpr"] <= hi and hi > 0.4  # 5 frames show little
    assert f"{rooms['fpr']:.3f} [{lo:.3f}, {hi:.3f}]" in r.output
    assert json.loads(out.read_text())["sources"] == both["sources"]
    assert r2.exit_code == 0, r2.output
    assert set(json.loads((tmp_path / "m2.json").read_text())["sources"]) == {"place-a/val"}


def test_missing_manifest_in_a_list_is_an_error(tmp_path: Path) -> None:
    from training.evaluate import expand_manifests

    listing = tmp_path / "dev.txt"
    listing.write_text("nowhere/manifest.jsonl\n")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        expand_manifests([listing])
