"""ONNX export parity (torch vs ONNX fp32, fp32 vs int8) and the shipped models' cards."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from spillwatch.model import SpillModel
from spillwatch.model_card import card_path_for, load_card, sha256_file
from spillwatch.settings import DEFAULT_MODEL, REPO_ROOT
from training.datasets import default_real_manifest

SHIPPED = [REPO_ROOT / "models" / "spillwatch.onnx", REPO_ROOT / "models" / "spillwatch-int8.onnx"]  # fp32, int8


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backbone", ["efficientnet-lite0", "mobilenet-v2"])
def test_onnx_fp32_matches_torch_and_int8_stays_close(tmp_path: Path, backbone: str) -> None:
    import torch

    from training.export import export_fp32, ort_run, ort_session, quantize_int8, torch_probs
    from training.net import SpillNet

    torch.manual_seed(0)
    net = SpillNet(64, pretrained=True, freeze_blocks=0, backbone=backbone).eval()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 64, 64, 3), dtype=np.uint8)
    p32 = tmp_path / "m.onnx"
    export_fp32(net, 1.7, p32)
    t_p, t_m = torch_probs(net, 1.7, x)
    o_p, o_m = ort_run(ort_session(p32), x)
    assert o_p.shape == (12,) and o_m.shape == (12, 4, 4)
    assert np.max(np.abs(t_p - o_p)) < 1e-4 and np.max(np.abs(t_m - o_m)) < 1e-4
    p8 = tmp_path / "m8.onnx"
    quantize_int8(p32, p8, x[:8])
    q_p, q_m = ort_run(ort_session(p8), x)
    assert q_p.shape == o_p.shape
    assert np.mean(np.abs(q_p - o_p)) < 0.1
    assert p8.stat().st_size < 0.5 * p32.stat().st_size


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_model_card_matches_the_file(path: Path) -> None:
    card = load_card(path)
    assert card.file == path.name and card.sha256 == sha256_file(path)
    assert card.normalisation and card.data and card.metrics.onnx_fp32 and card.created and card.training
    assert card.precision == ("int8" if "int8" in path.name else "fp32")
    m = SpillModel.load(path)
    s, g = card.input_size, card.map_size
    inputs = {i.name: i for i in m.session.get_inputs()}
    assert list(inputs) == ["image"] and inputs["image"].type == "tensor(uint8)"
    assert inputs["image"].shape[1:] == [s, s, 3]
    assert [o.name for o in m.session.get_outputs()] == ["spill_prob", "spill_map"]
    preds = m.infer(np.zeros((2, s, s, 3), np.uint8))
    assert preds[0].spill_map.shape == (g, g)
    assert 0.0 < card.threshold < 1.0
    md = (REPO_ROOT / "models" / "MODEL_CARD.md").read_text()
    assert md.count(card.sha256) == 1
    # committed cards record portable paths only (relative to the repository or the data root)
    for text in (card_path_for(path).read_text(), md):
        assert not re.search(r"(/work/|/tmp/|/root/|/home/)", text)


def _frames(n: int) -> np.ndarray:
    import cv2

    from training.synth import generate_sample

    m = SpillModel.load(DEFAULT_MODEL)
    out = []
    for i in range(n):
        s = generate_sample(777_000 + i, size=240)
        ok, enc = cv2.imencode(".jpg", cv2.resize(s.image, (480, 360)), [cv2.IMWRITE_JPEG_QUALITY, 85])
        out.append(m.preprocess_jpeg(enc.tobytes()))
    return np.stack(out)


@pytest.mark.timeout(120)
def test_shipped_int8_agrees_with_fp32_on_synthetic_frames() -> None:
    m32, m8 = (SpillModel.load(p) for p in SHIPPED)
    x = _frames(48)
    p32 = np.array([p.spill_prob for p in m32.infer(x)])
    p8 = np.array([p.spill_prob for p in m8.infer(x)])
    thr = m32.threshold
    assert np.mean((p32 >= thr) == (p8 >= thr)) >= 0.95
    assert np.mean(np.abs(p32 - p8)) < 0.05


@pytest.mark.timeout(180)
def test_shipped_int8_agrees_with_fp32_on_real_val() -> None:
    from training.datasets import load_manifest

    man = default_real_manifest()
    if not man.is_file():
        pytest.skip("real data (../shared/data/spills-real) not present")
    m32, m8 = (SpillModel.load(p) for p in SHIPPED)
    recs = [r for r in load_manifest(man) if r.split == "val"]
    x = np.stack([m32.preprocess_jpeg(r.path.read_bytes()) for r in recs])
    p32 = np.array([p.spill_prob for p in m32.infer(x)])
    p8 = np.array([p.spill_prob for p in m8.infer(x)])
    thr = m32.threshold
    assert np.mean((p32 >= thr) == (p8 >= thr)) >= 0.995


def test_training_preprocessing_is_the_runtime_preprocessing(tmp_path: Path) -> None:
    from training.datasets import load_manifest, load_record_image, write_synthetic_manifest
    from training.train import runtime_input

    m = SpillModel.load(DEFAULT_MODEL)
    for r in load_manifest(write_synthetic_manifest(tmp_path, 3, seed=2)):
        a = m.preprocess_jpeg(r.path.read_bytes())
        b = runtime_input(load_record_image(r, m.input_size).image, m.input_size)
        assert np.array_equal(a, b)


def test_preprocess_many_matches_preprocess_jpeg_and_flags_corrupt_frames(tmp_path: Path) -> None:
    from spillwatch.model import ImageDecodeError
    from training.datasets import load_manifest, write_synthetic_manifest

    m = SpillModel.load(DEFAULT_MODEL, threads=2)
    jpegs = [r.path.read_bytes() for r in load_manifest(write_synthetic_manifest(tmp_path, 4, seed=9))]
    jpegs.insert(2, b"\xff\xd8garbage")
    out = m.preprocess_many(jpegs)
    assert isinstance(out[2], ImageDecodeError)
    for j, x in zip(jpegs[:2] + jpegs[3:], out[:2] + out[3:], strict=True):
        assert isinstance(x, np.ndarray) and np.array_equal(x, m.preprocess_jpeg(j))
    with pytest.raises(ImageDecodeError):
        m.predict_jpegs(jpegs)
    assert len(m.predict_jpegs(jpegs[:2])) == 2


def test_the_batch_split_gives_every_frame_its_own_prediction_in_order_and_isolates_a_corrupt_one(tmp_path: Path) -> None:
    """The default batch split cuts a batch into lanes that decode and infer at the same time: each frame
    must still get the prediction the model gives it alone, in the batch's order, and a corrupt frame its
    own error in its place while the frames around it are classified."""
    import threading

    from spillwatch.model import ImageDecodeError
    from training.datasets import load_manifest, write_synthetic_manifest

    recs = load_manifest(write_synthetic_manifest(tmp_path, 8, seed=4))
    jpegs = [r.path.read_bytes() for r in recs]
    alone_model = SpillModel.load(DEFAULT_MODEL, threads=1, split="operators")
    alone = [alone_model.infer(alone_model.preprocess_jpeg(j))[0].spill_prob for j in jpegs]
    assert len({round(p, 3) for p in alone}) > 3  # frames the model tells apart, so a swapped order would show
    lanes = SpillModel.load(DEFAULT_MODEL, threads=3)
    assert lanes.split == "batch" and lanes.lanes == 3
    items = jpegs[:3] + [b"\xff\xd8 not a jpeg"] + jpegs[3:]
    ran_on: set[str] = set()

    def prepare(data: bytes) -> np.ndarray:
        ran_on.add(threading.current_thread().name)
        return lanes.preprocess_jpeg(data)

    for n in (1, 2, 3, 4, len(items)):
        done, ms = lanes.prepare_and_infer(items[:n], prepare)
        assert len(done) == n and ms >= 0
        for i, r in enumerate(done):
            if i == 3:
                assert isinstance(r, ImageDecodeError)
                continue
            assert not isinstance(r, Exception)
            x, pred = r
            j = items[i]
            assert np.array_equal(x, lanes.preprocess_jpeg(j))
            assert pred.spill_prob == pytest.approx(alone[jpegs.index(j)], abs=1e-5)
    assert len(ran_on) == 3  # the nine frames were spread over three lanes
    assert [p.spill_prob for p in lanes.infer(np.stack([lanes.preprocess_jpeg(j) for j in jpegs]))] == pytest.approx(alone, abs=1e-5)
    only_bad, _ = lanes.prepare_and_infer([b"", b"\xff\xd8"], lanes.preprocess_jpeg)
    assert all(isinstance(r, ImageDecodeError) for r in only_bad)
    with pytest.raises(ValueError, match="split"):
        SpillModel.load(DEFAULT_MODEL, split="lanes")  # type: ignore[arg-type]
