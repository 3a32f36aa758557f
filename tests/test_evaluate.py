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
        r = CliRunner().invoke(app, ["evaluate", "--manifest", str(mp), "--model", str(DEFAULT_MODEL), "--json", str(out),
                                     "--report", str(rep), "--threshold", "0.5"])
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
