"""``spillwatch train --archive``: a tiny training run that takes labelled archive frames (confirmed
spills as positives, a false alarm as hard negatives) beside the real manifest, split by camera."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.archive_labels import label_incident
from spillwatch.model_card import portable_path
from tests.helpers.archive_builder import Incident, build_camera
from training.archive_export import SplitConfig, resolve_archive_manifest


@pytest.mark.timeout(300)
def test_tiny_training_run_with_an_archive(tmp_path: Path) -> None:
    from spillwatch.model import SpillModel
    from training.datasets import write_synthetic_manifest
    from training.train import TrainConfig, train

    root = tmp_path / "archive"
    build_camera(root, "cam-a", 120, set(range(40, 90)), [Incident("inc-a", 40, 43, 92)])
    build_camera(root, "cam-b", 200, set(range(150, 160)), [Incident("inc-b", 150, 152, 165)])
    label_incident(root, "inc-a", True)
    label_incident(root, "inc-b", False)
    archive_manifest = resolve_archive_manifest(root, tmp_path / "run", SplitConfig(val_cameras=frozenset({"cam-b"})))

    real = write_synthetic_manifest(tmp_path / "real", 8, seed=5, split="val")
    cfg = TrainConfig(out=tmp_path / "out", real_manifest=real, archives=[archive_manifest], use_real=False, synthetic=8,
                      synthetic_val=4, synth_size=96, input_size=64, batch_size=4, max_steps=2, calib_frames=8,
                      cache_dir=None, gen_workers=1, progress=False, seed=3, export_int8=False)
    card = train(cfg)
    assert card.data is not None and card.data.real_train is not None and card.data.real_val is not None
    # the archive's camera-a spill frames trained, its camera-b false alarm is validation hard negatives
    assert card.data.real_train.n == 53 and card.data.real_train.by_split_source_label == {"train/archive/spill": 53}
    assert card.data.real_val.by_split_source_label["val/archive/clean"] == 28
    assert portable_path(archive_manifest) in card.data.real_train.manifests
    assert SpillModel.load(tmp_path / "out" / "spillwatch.onnx").input_size == 64
