"""The model soup: the mean of several seeds' weights, refused for runs of different recipes, and taken by
``spillwatch train --resume`` through calibration, threshold and export like a trained run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training.soup import SoupError, main, make_soup


def _ckpt(path: Path, seed: int, weight: float, **cfg: object) -> Path:
    state = {"fc.weight": torch.full((2, 3), weight), "bn.running_mean": torch.full((3,), weight * 10),
             "bn.num_batches_tracked": torch.tensor(seed, dtype=torch.int64)}
    config = {"seed": seed, "out": str(path.parent), "lr": 0.0015, "closeup_fraction": 0.3, **cfg}
    card_base = {"training": {"steps": 10, "train_seconds": 100.0, "history": [{"step": 10, "frame_loss": 0.1}]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "config": config, "temperature": 1.2, "card_base": card_base}, path)
    return path


def test_soup_is_the_mean_of_the_seeds_weights_and_statistics(tmp_path: Path) -> None:
    runs = [_ckpt(tmp_path / f"s{i}" / "model.pt", seed=i, weight=w) for i, w in ((1, 0.0), (2, 1.0), (3, 5.0))]
    soup = make_soup(runs)
    assert torch.allclose(soup["state_dict"]["fc.weight"], torch.full((2, 3), 2.0))
    assert torch.allclose(soup["state_dict"]["bn.running_mean"], torch.full((3,), 20.0))
    assert int(soup["state_dict"]["bn.num_batches_tracked"]) == 1  # a counter is not averaged
    assert soup["soup"]["seeds"] == [1, 2, 3]
    # its cost is every ingredient's; no single run's loss curve is claimed for it
    assert soup["card_base"]["training"]["train_seconds"] == 300.0 and soup["card_base"]["training"]["history"] == []


def test_soup_refuses_runs_of_another_recipe_or_a_single_run(tmp_path: Path) -> None:
    a = _ckpt(tmp_path / "a" / "model.pt", seed=1, weight=0.0)
    b = _ckpt(tmp_path / "b" / "model.pt", seed=2, weight=1.0, closeup_fraction=0.0)
    with pytest.raises(SoupError, match="closeup_fraction"):
        make_soup([a, b])
    with pytest.raises(SoupError, match="at least two"):
        make_soup([a])
    bad = tmp_path / "c" / "model.pt"
    bad.parent.mkdir()
    torch.save({"weights": 1}, bad)
    with pytest.raises(SoupError, match="not a model.pt"):
        make_soup([a, bad])
    with pytest.raises(SystemExit, match="other settings"):
        main([str(a), str(b), "--out", str(tmp_path / "soup.pt")])
    assert not (tmp_path / "soup.pt").exists()


@pytest.mark.timeout(480)
def test_a_soup_of_two_tiny_runs_goes_through_resume_to_a_loadable_model(tmp_path: Path) -> None:
    from spillwatch.model import SpillModel
    from training.datasets import write_synthetic_manifest
    from training.train import TrainConfig, train

    real = write_synthetic_manifest(tmp_path / "real", 16, seed=5, split="train")
    lines = real.read_text().splitlines()
    real.write_text("\n".join(lines[:8] + [json.dumps({**json.loads(x), "split": "val"}) for x in lines[8:]]) + "\n")
    cfg = TrainConfig(out=tmp_path / "a", real_manifest=real, synthetic=8, synthetic_val=8, synth_size=96, input_size=64,
                      batch_size=4, max_steps=2, calib_frames=8, cache_dir=None, gen_workers=1, progress=False, seed=3,
                      export_int8=False)
    train(cfg)
    # a second seed's run: the first run's weights, moved (training another tiny run costs minutes of CPU)
    ck = torch.load(tmp_path / "a" / "model.pt", weights_only=False)
    gen = torch.Generator().manual_seed(4)
    ck["state_dict"] = {k: v * (1 + 0.05 * torch.rand(v.shape, generator=gen)) if v.is_floating_point() else v
                        for k, v in ck["state_dict"].items()}  # scaled, so running variances stay positive
    ck["config"] = {**ck["config"], "seed": 4, "out": str(tmp_path / "b")}
    (tmp_path / "b").mkdir()
    torch.save(ck, tmp_path / "b" / "model.pt")
    main([str(tmp_path / "a" / "model.pt"), str(tmp_path / "b" / "model.pt"), "--out", str(tmp_path / "soup" / "model.pt")])
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["state_dict"]
    moved = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert moved
    card = train(replace(cfg, out=tmp_path / "soup", resume=tmp_path / "soup" / "model.pt", note="soup of seeds 3, 4",
                         bn_recompute_batches=2))
    out = torch.load(tmp_path / "soup" / "model.pt", weights_only=False)["state_dict"]
    frozen = ("stem.", "blocks16.0.", "blocks16.1.", "blocks16.2.")
    restated = [k for k in moved if k.endswith(("running_mean", "running_var")) and not k.startswith(frozen)]
    assert restated
    for k in moved:  # the exported network is the soup, not a retrained one; only its trained layers' statistics are its own
        mean = (a[k] + b[k]) / 2
        assert torch.allclose(out[k], mean, atol=1e-6) != (k in restated), k
    assert card.training is not None and card.training.settings["bn_recompute_batches"] == 2
    assert card.note == "soup of seeds 3, 4" and card.training is not None and card.training.steps == 2
    assert SpillModel.load(tmp_path / "soup" / "spillwatch.onnx").card.version == card.version
