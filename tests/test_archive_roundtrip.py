"""Archive -> export -> ``spillwatch evaluate`` round trip, with a tiny real ONNX model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processors.archive_labels import label_incident
from tests.helpers.archive_builder import Incident, build_camera
from tests.helpers.tiny_model import build_tiny_model
from training.archive_export import export_manifest


@pytest.mark.timeout(120)
def test_export_then_evaluate(tmp_path: Path) -> None:
    from training.evaluate import evaluate

    root = tmp_path / "archive"
    # cam-a: spill images on 40..89; the incident stays open until 92 (3 clean images labelled spill)
    build_camera(root, "cam-a", 120, set(range(40, 90)), [Incident("inc-a", 40, 43, 92)])
    # cam-b: red-patch images on 150..159 that an operator calls a false alarm (hard negatives)
    build_camera(root, "cam-b", 200, set(range(150, 160)), [Incident("inc-b", 150, 152, 165)])
    label_incident(root, "inc-a", True)
    label_incident(root, "inc-b", False)
    out = tmp_path / "export" / "manifest.jsonl"
    summary = export_manifest(root, out)
    model = build_tiny_model(tmp_path / "model", threshold=0.5)
    res = evaluate(out, model, progress=False)
    assert res["n"] == summary.n == 53 + 28 and res["n_skipped"] == 0
    # what the labels and images imply for a redness model
    assert (res["tp"], res["fn"], res["fp"], res["tn"]) == (50, 3, 10, 18)
    assert res["recall"] == pytest.approx(50 / 53) and res["precision"] == pytest.approx(50 / 60)
    assert res["model_version"] == "tiny-test-1"
    # the CLI writes the same JSON keys
    json.dumps(res, default=str)
