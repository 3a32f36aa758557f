"""New training ingredients: real liquids composited onto clean frames, extra data sets with a
held-out tune part, per-group recall targets in the threshold rule, and a tiny run that uses them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.calibration import choose_threshold
from training.composite import composite_spill, liquid_cutout
from training.datasets import (
    load_manifest,
    split_tune,
    write_synthetic_manifest,
)


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    src = np.full((120, 160, 3), 150, np.uint8)
    src[60:100, 50:110] = (40, 60, 90)               # a dark puddle on a grey floor
    mask = np.zeros((120, 160), np.uint8)
    mask[60:100, 50:110] = 1
    tgt = rng.integers(180, 220, size=(150, 200, 3)).astype(np.uint8)
    return src, mask, tgt


def test_composite_draws_the_liquid_only_where_its_mask_says() -> None:
    src, mask, tgt = _scene()
    res = composite_spill(np.random.default_rng(3), src, mask, tgt)
    assert res is not None
    out, m = res
    assert out.shape == tgt.shape and m.shape == tgt.shape[:2] and set(np.unique(m)) <= {0, 1}
    assert m.sum() >= 30
    # far from the pasted liquid the target is untouched; inside it the frame changed (darker liquid)
    far = ~np.asarray(__import__("cv2").dilate(m, np.ones((41, 41), np.uint8)), bool)
    assert np.array_equal(out[far], tgt[far])
    inside = m.astype(bool)
    assert out[inside].astype(float).mean() < tgt[inside].astype(float).mean() - 10
    # the liquid lies on the floor part of the frame (lower part), never at the very top
    ys = np.nonzero(m)[0]
    assert ys.mean() > 0.3 * tgt.shape[0]


def test_composite_is_seeded_and_refuses_an_empty_liquid() -> None:
    src, mask, tgt = _scene()
    a = composite_spill(np.random.default_rng(7), src, mask, tgt)
    b = composite_spill(np.random.default_rng(7), src, mask, tgt)
    assert a is not None and b is not None and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert composite_spill(np.random.default_rng(7), src, np.zeros_like(mask), tgt) is None
    cut = liquid_cutout(src, mask)
    assert cut is not None and np.allclose(cut[2], 150)  # the floor around it


def test_tune_part_is_stable_disjoint_and_keeps_sequences_whole(tmp_path: Path) -> None:
    mp = write_synthetic_manifest(tmp_path / "x", 40, seed=2, split="train")
    lines = [json.loads(x) for x in mp.read_text().splitlines()]
    for i, d in enumerate(lines):
        d["sequence"] = f"s{i // 4}"  # 10 sequences of 4 frames
    mp.write_text("\n".join(json.dumps(d) for d in lines) + "\n")
    recs = load_manifest(mp)
    tr, tune = split_tune(recs, 0.3)
    _, tune2 = split_tune(recs, 0.3)
    assert [r.path for r in tune] == [r.path for r in tune2]
    assert len(tr) + len(tune) == len(recs) and not {r.path for r in tr} & {r.path for r in tune}
    assert all(r.split == "tune" for r in tune) and all(r.split == "train" for r in tr)
    assert not {r.sequence for r in tr} & {r.sequence for r in tune}
    assert 0 < len(tune) < len(recs)
    assert split_tune(recs, 0.0) == (list(recs), [])


def test_threshold_meets_each_groups_own_recall_target_then_the_caps() -> None:
    liquids = np.linspace(0.5, 1.0, 100)         # recall 0.97 needs t <= 0.515
    wet = np.linspace(0.0, 1.0, 10)              # recall 0.8 needs t <= 0.222 (8 of 10)
    c = choose_threshold({"real": liquids, "wet": wet}, np.zeros(0), 0.97, 0.01, group_targets={"wet": 0.8})
    assert c.threshold == float(wet[2])
    assert np.mean(wet >= c.threshold) >= 0.8 and np.mean(liquids >= c.threshold) >= 0.97
    assert "wet>=0.8" in c.rule
    # an FPR cap on a clean set (e.g. held-out rooms) wins over recall, and the card says so
    rooms = np.array([0.1, 0.2, 0.3, 0.45])
    c = choose_threshold({"real": liquids, "wet": wet}, np.zeros(0), 0.97, 0.01, {"tune/interiors": (rooms, 0.02)},
                         group_targets={"wet": 0.8})
    assert c.threshold > 0.45 and np.mean(rooms >= c.threshold) == 0.0
    assert "tune/interiors" in c.rule and c.notes and np.mean(wet >= c.threshold) < 0.8


def _extra_sets(tmp_path: Path) -> tuple[Path, Path]:
    """A clean-only 'rooms' set and a spill-only 'wet' set (frame labels + boxes), each with train and val."""
    rooms = write_synthetic_manifest(tmp_path / "rooms", 24, seed=11, split="train", p_spill=0.0)
    rl = [json.loads(x) for x in rooms.read_text().splitlines()]
    rooms.write_text("\n".join(json.dumps({**d, "source": "rooms", "split": "val" if i % 4 == 0 else "train"})
                               for i, d in enumerate(rl)) + "\n")
    wet = write_synthetic_manifest(tmp_path / "wet", 24, seed=12, split="train", p_spill=1.0)
    wl = [json.loads(x) for x in wet.read_text().splitlines()]
    wet.write_text("\n".join(json.dumps({**d, "source": "wet-floor-stock", "split": "val" if i % 4 == 0 else "train"})
                             for i, d in enumerate(wl)) + "\n")
    return rooms, wet


def test_batches_draw_extra_sets_and_frame_only_sources_have_no_map_loss(tmp_path: Path) -> None:
    from training.train import BatchMaker, TrainConfig, load_images

    rooms, wet = _extra_sets(tmp_path)
    recs = [r for r in load_manifest(rooms) + load_manifest(wet) if r.split == "train"]
    cfg = TrainConfig(input_size=64, batch_size=64, seed=1, real_clean_fraction=0.5)
    imgs = load_images(recs, 64, cfg.frame_only_sources, "", False)
    assert all(li.mask is None for r, li in zip(recs, imgs, strict=True) if r.source == "wet-floor-stock")
    assert all(li.mask is not None for r, li in zip(recs, imgs, strict=True) if r.source == "rooms")
    mk = BatchMaker(cfg, recs, imgs, None, None, frozenset(r.manifest for r in recs))
    assert len(mk.pools.extra_spill) == sum(r.y for r in recs) and len(mk.pools.extra_clean) == sum(1 - r.y for r in recs)
    _, ys, _, valid = mk.make(0)
    assert 0 < ys.sum() < len(ys)
    assert np.all(valid[ys == 1] == 0.0) and np.all(valid[ys == 0] == 1.0)


def _tiny_run(tmp_path: Path) -> tuple[Any, Path, Path, Path]:
    """A 2-step training run on 8 synthetic real-train + 8 real-val frames and the two small extra sets."""
    from training.train import TrainConfig

    real = write_synthetic_manifest(tmp_path / "real", 16, seed=5, split="train")
    lines = real.read_text().splitlines()
    real.write_text("\n".join(lines[:8] + [json.dumps({**json.loads(x), "split": "val"}) for x in lines[8:]]) + "\n")
    rooms, wet = _extra_sets(tmp_path)
    cfg = TrainConfig(out=tmp_path / "out", real_manifest=real, extra_manifests=[rooms, wet], tune_fraction=0.5,
                      synthetic=12, synthetic_val=8, synth_size=96, input_size=64, batch_size=4, max_steps=2,
                      calib_frames=8, check_frames=8, cache_dir=None, gen_workers=1, progress=False, seed=3,
                      composites=6, export_int8=False)
    return cfg, real, rooms, wet


def test_tiny_run_holds_out_tune_frames_for_the_threshold_and_only_evaluates_extra_val(tmp_path: Path) -> None:
    from training.train import train

    cfg, *_ = _tiny_run(tmp_path)
    card = train(cfg)
    m = card.metrics.onnx_fp32 or {}
    assert {"real-val", "synthetic-val", "tune", "extra-val", "all-sources"} <= set(m)
    assert card.calibration is not None and set(card.calibration.fitted_on) == {"real-val", "synthetic-val"}
    tc = card.threshold_choice
    assert tc is not None
    assert "tune/wet-floor-stock/tune" in tc.recall_thresholds and "tune/rooms/tune" in tc.fpr_caps
    assert not any("val" in k and "extra" in k for k in list(tc.recall_thresholds) + list(tc.fpr_caps))
    assert set(m["extra-val"].sources) == {"rooms/val", "wet-floor-stock/val"}
    keys = set(m["all-sources"].sources)
    assert {"rooms/train", "rooms/tune", "rooms/val", "wet-floor-stock/tune", "synthetic/train", "synthetic/val"} <= keys
    assert card.training is not None and card.training.settings["composites"] == 6
    # tune frames never train
    assert card.data is not None and card.data.real_train is not None
    assert all(not k.startswith("tune/") for k in card.data.real_train.by_split_source_label)


def test_ingredient_arms_are_train_configs_and_render_per_source_columns() -> None:
    from dataclasses import replace

    from spillwatch.model_card import Ablation, AblationArm, SliceMetrics
    from training.ablation import INGREDIENT_ARMS
    from training.card import ablation_table
    from training.train import TrainConfig

    for flags in INGREDIENT_ARMS.values():
        replace(TrainConfig(), **flags)  # every flag is a real setting
    wet = SliceMetrics(n=19, spill=19, clean=0, tp=17, fn=2, fp=0, tn=0, recall=17 / 19, roc_auc=0.9)
    rooms = SliceMetrics(n=33, spill=0, clean=33, tp=0, fn=0, fp=1, tn=32, fpr=1 / 33, roc_auc=0.95)
    ab = Ablation(steps=10, threshold_rule="r", arms={"a": AblationArm(steps=10, threshold=0.5, sources={
        "wet-floor-stock/val": wet, "interiors/val": rooms})})
    rows = ablation_table(ab)
    assert "wet-floors val recall" in rows[0] and "| 0.895 |" in rows[2] and "| 0.030 |" in rows[2]


def test_conflicting_caps_give_the_threshold_that_breaks_the_fewest() -> None:
    # real liquids need t <= 0.9 (recall 0.97), wet photos t <= 0.7 (recall 0.8); rooms cap t >= 0.6;
    # one floor photo scores 0.999 (its cap cannot be met without losing every recall target) and a
    # synthetic clean cap wants t >= 0.8 but counts half
    liquids = np.concatenate([np.full(3, 0.5), np.linspace(0.9, 1.0, 97)])
    wet = np.array([0.1, 0.2, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99])
    floor = np.array([0.1, 0.2, 0.999])
    rooms = np.array([0.3, 0.5, 0.599])
    synth_clean = np.concatenate([np.full(97, 0.1), [0.799, 0.8, 0.85]])
    c = choose_threshold({"real": liquids, "wet": wet}, floor, 0.97, 0.0,
                         {"rooms": (rooms, 0.0), "synthetic clean": (synth_clean, 0.02)},
                         group_targets={"wet": 0.8}, weights={"synthetic clean": 0.5})
    # every threshold from the rooms cap (0.6 + margin) up to the wet target's 0.7 meets rooms, wet and
    # real and breaks the same two caps: their middle
    rooms_cap = c.caps["rooms"]
    assert rooms_cap is not None and rooms_cap < c.threshold < 0.7
    assert np.mean(wet >= c.threshold) >= 0.8 and np.mean(liquids >= c.threshold) >= 0.97
    assert np.mean(rooms >= c.threshold) == 0.0
    assert "conflict" in c.rule
    assert any("FPR cap 'floor'" in n and "FPR cap 'synthetic clean'" in n for n in c.notes)


def test_rethreshold_rewrites_only_the_cards(tmp_path: Path) -> None:
    from spillwatch.model import SpillModel, sha256_file
    from training.rethreshold import rethreshold
    from training.train import train

    cfg, real, rooms, wet = _tiny_run(tmp_path)
    train(cfg)
    onnx = tmp_path / "out" / "spillwatch.onnx"
    sha = sha256_file(onnx)
    # recorded paths are portable (data root / repository): data elsewhere is named again
    cards = rethreshold(tmp_path / "out", overrides={"threshold_groups": "real", "real_manifest": real,
                                                     "extra_manifests": [rooms, wet], "cache_dir": None})
    c = cards["fp32"]
    assert sha256_file(onnx) == sha == c.sha256
    assert c.threshold_choice is not None and any("re-picked" in n for n in c.threshold_choice.notes)
    assert not any(k.startswith("synthetic-val/") for k in c.threshold_choice.recall_thresholds)
    m = c.metrics.onnx_fp32 or {}
    assert {"real-val", "tune", "extra-val", "all-sources"} <= set(m) and m["real-val"].threshold == c.threshold
    assert SpillModel.load(onnx).threshold == c.threshold
    assert (tmp_path / "out" / "MODEL_CARD.md").read_text().count(f"{c.threshold:.4f}") >= 1


def test_a_tie_that_keeps_every_recall_target_takes_its_middle() -> None:
    # the close-up model's case: the interiors cap is met from 0.0095, the wet-floor target holds up
    # to 0.123, and every threshold in between breaks the same caps (a floor photo at 0.99, synthetic
    # clean scenes). Each end sits on one held-out frame; the old tie-break took the lowest (0.0095:
    # 94 % of the synthetic clean scenes flagged), the highest would sit on the wet target's edge.
    liquids = np.linspace(0.5, 1.0, 100)
    wet = np.array([0.01, 0.05, 0.123, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9])  # 0.8 recall: t <= 0.123
    rooms = np.array([0.001, 0.002, 0.0085])  # cap 0 (+ margin): t >= 0.0095
    floor = np.array([0.02, 0.05, 0.1, 0.99])
    synth_clean = np.concatenate([np.full(90, 0.01), np.full(10, 0.75)])
    c = choose_threshold({"real": liquids, "wet": wet}, floor, 0.97, 0.0,
                         {"rooms": (rooms, 0.0), "synthetic clean": (synth_clean, 0.02)},
                         group_targets={"wet": 0.8}, weights={"synthetic clean": 0.5})

    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))

    lo, hi = c.caps["rooms"], 0.123
    assert lo is not None and lo < c.threshold < hi
    assert logit(c.threshold) - logit(lo) == pytest.approx(logit(hi) - logit(c.threshold))
    assert np.mean(wet >= c.threshold) >= 0.8 and np.mean(liquids >= c.threshold) >= 0.97
    assert np.mean(rooms >= c.threshold) == 0.0 and np.mean(synth_clean >= c.threshold) == 0.1
    assert any("FPR cap 'floor'" in n and "FPR cap 'synthetic clean'" in n and "recall" not in n for n in c.notes)
    assert any("middle" in n for n in c.notes)


class _Stop(Exception):
    """Raised by the stand-in for training: the command got as far as starting a run."""


@pytest.fixture
def train_command(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], Any]:
    """`spillwatch train` with training replaced by a recorder: (configs it would have trained, invoke(args))."""
    from typer.testing import CliRunner

    import training.train
    from spillwatch.cli import app

    seen: list[Any] = []

    def fake_train(cfg: Any) -> Any:
        seen.append(cfg)
        raise _Stop

    monkeypatch.setattr(training.train, "train", fake_train)
    return seen, lambda args: CliRunner().invoke(app, ["train", *args])


def test_train_command_passes_the_floor_share_and_refuses_one_out_of_range(train_command: tuple[list[Any], Any], tmp_path: Path) -> None:
    """`spillwatch train --floor-share F` sets the share of floor photos among the non-extra real clean
    draws (the experiment in docs/model.md); a share outside [0, 1] is a clear usage error, not a run."""
    seen, invoke = train_command
    r = invoke(["--out", str(tmp_path / "run"), "--no-extra", "--floor-share", "0.8"])
    assert isinstance(r.exception, _Stop) and seen[0].floor_share_of_clean == 0.8
    r = invoke(["--out", str(tmp_path / "run"), "--no-extra"])
    assert isinstance(r.exception, _Stop) and seen[1].floor_share_of_clean == 0.5  # the shipped recipe
    r = invoke(["--out", str(tmp_path / "run"), "--floor-share", "1.5"])
    assert r.exit_code == 2 and "floor-share" in r.output and len(seen) == 2


def test_train_command_passes_the_backbone_and_refuses_an_unknown_one(train_command: tuple[list[Any], Any], tmp_path: Path) -> None:
    """`spillwatch train --backbone mobilenet-v2` trains MobileNetV2 (docs/model.md); a misspelt backbone is
    a usage error before any data is loaded, not a failure after minutes of rendering."""
    seen, invoke = train_command
    r = invoke(["--out", str(tmp_path / "run"), "--no-extra", "--backbone", "mobilenet-v2"])
    assert isinstance(r.exception, _Stop) and seen[0].backbone == "mobilenet-v2"
    r = invoke(["--out", str(tmp_path / "run"), "--no-extra"])
    assert isinstance(r.exception, _Stop) and seen[1].backbone == "efficientnet-lite0"  # the shipped model's
    r = invoke(["--out", str(tmp_path / "run"), "--backbone", "mobilenetv2"])
    assert r.exit_code == 2 and "--backbone" in r.output and "mobilenet-v2" in r.output and len(seen) == 2


def test_train_command_passes_the_dark_closeups_and_refuses_a_share_out_of_range(train_command: tuple[list[Any], Any], tmp_path: Path) -> None:
    """`spillwatch train --dark-closeups P` re-centres that share of the close-ups of real clean frames on a
    dark spot (the experiment in docs/model.md); the default is the shipped recipe's 0; a share outside [0, 1]
    is a usage error, not a run."""
    seen, invoke = train_command
    r = invoke(["--out", str(tmp_path / "run"), "--no-extra", "--closeups", "0.3", "--dark-closeups", "0.2"])
    assert isinstance(r.exception, _Stop) and seen[0].dark_closeup_fraction == 0.2 and seen[0].closeup_fraction == 0.3
    r = invoke(["--out", str(tmp_path / "run"), "--no-extra"])
    assert isinstance(r.exception, _Stop) and seen[1].dark_closeup_fraction == 0.0
    assert seen[1].dark_closeup_frames == "all-clean"
    r = invoke(["--out", str(tmp_path / "run"), "--dark-closeups", "2"])
    assert r.exit_code == 2 and "dark-closeups" in r.output and len(seen) == 2
    r = invoke(["--out", str(tmp_path / "run"), "--no-extra", "--dark-closeups", "0.5", "--dark-closeup-frames", "floor-photos"])
    assert isinstance(r.exception, _Stop) and seen[2].dark_closeup_frames == "floor-photos"
    r = invoke(["--out", str(tmp_path / "run"), "--dark-closeup-frames", "floors"])
    assert r.exit_code == 2 and "--dark-closeup-frames" in r.output and "floor-photos" in r.output and len(seen) == 3
    assert seen[0].box_closeup_fraction == 0.0  # the shipped recipe's
    r = invoke(["--out", str(tmp_path / "run"), "--no-extra", "--box-closeups", "0.3"])
    assert isinstance(r.exception, _Stop) and seen[3].box_closeup_fraction == 0.3
    r = invoke(["--out", str(tmp_path / "run"), "--box-closeups", "-0.1"])
    assert r.exit_code == 2 and "box-closeups" in r.output and len(seen) == 4
