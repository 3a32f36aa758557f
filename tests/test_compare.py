"""``spillwatch models compare``: the promotion rule (pure), side-by-side evaluation of two real ONNX
models on the same manifest, and --promote copying only a winner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from spillwatch.model import SpillModel
from tests.helpers.tiny_model import build_tiny_model, clean_jpeg, spill_jpeg
from training.compare import paired_outcomes, verdict


def ev(recall: float | None, precision: float | None = 0.9, fpr: float | None = 0.05, floor_fpr: float | None = None) -> dict:
    return {"recall": recall, "precision": precision, "fpr": fpr, "floor_fpr": floor_fpr}


def test_recall_decides_first_then_precision_then_fpr() -> None:
    assert verdict(ev(0.90, 0.99), ev(0.95, 0.80))["promote"] is True  # recall first, even at lower precision
    assert verdict(ev(0.95, 0.80), ev(0.90, 0.99))["promote"] is False
    assert verdict(ev(0.95, 0.90), ev(0.952, 0.95))["promote"] is True  # recall tie -> precision
    assert verdict(ev(0.95, 0.90, 0.10), ev(0.95, 0.90, 0.02))["promote"] is True  # -> FPR
    v = verdict(ev(0.95, 0.90, 0.05), ev(0.95, 0.90, 0.05))
    assert v["promote"] is False and "stays" in v["reason"]  # a tie never promotes
    assert [s["metric"] for s in verdict(ev(0.95), ev(0.96))["steps"]] == ["recall"]


def test_vetoes_floor_fpr_and_replay_incidents() -> None:
    v = verdict(ev(0.90, floor_fpr=0.00), ev(0.97, floor_fpr=0.05))
    assert v["promote"] is False and "floor FPR" in v["reason"]
    ra = {"recall": 1.0, "false_incidents_per_camera_hour": 0.0}
    assert verdict(ev(0.90), ev(0.97), ra, {"recall": 0.5, "false_incidents_per_camera_hour": 0.0})["promote"] is False
    assert verdict(ev(0.90), ev(0.97), ra, {"recall": 1.0, "false_incidents_per_camera_hour": 0.5})["promote"] is False
    assert verdict(ev(0.90), ev(0.97), ra, {"recall": 1.0, "false_incidents_per_camera_hour": 0.0})["promote"] is True


def _paired(spill_p: float, clean_p: float = 1.0) -> dict:
    return {"spill": {"p_value": spill_p}, "clean": {"p_value": clean_p}}


def test_a_win_must_be_beyond_chance_on_the_frames_both_scored() -> None:
    # 3 more of 559 spill frames found (0.0054 > the 0.005 tolerance), all three by B alone: p = 0.25
    a, b = ev(555 / 559, 0.99), ev(558 / 559, 0.99)
    assert verdict(a, b)["promote"] is True  # without frame scores: the tolerance alone decides
    v = verdict(a, b, paired=_paired(0.25))
    assert v["promote"] is False and "beyond chance" in v["reason"] and "recall (p = 0.25)" in v["reason"]
    assert v["steps"][0]["result"] == "B better, within chance" and "McNemar" in v["rule"]
    assert verdict(a, b, paired=_paired(0.0005))["promote"] is True
    # recall within chance, then precision decides on the clean frames, beyond chance or not
    a2, b2 = ev(555 / 559, 0.90, 0.10), ev(558 / 559, 0.97, 0.02)
    assert verdict(a2, b2, paired=_paired(0.25, clean_p=0.001))["promote"] is True
    assert verdict(a2, b2, paired=_paired(0.25, clean_p=0.3))["promote"] is False
    # a loss rejects B even when it is within chance: a candidate must not miss more spills
    v = verdict(ev(558 / 559), ev(555 / 559, 0.999, 0.0), paired=_paired(0.25, clean_p=0.0001))
    assert v["promote"] is False and "worse recall" in v["reason"]


def test_paired_outcomes_count_the_frames_only_one_model_gets_right() -> None:
    def frames(spill_probs: list[float], clean_probs: list[float]) -> list[dict]:
        return ([{"file": f"s{i}", "spill": True, "prob": p} for i, p in enumerate(spill_probs)]
                + [{"file": f"c{i}", "spill": False, "prob": p} for i, p in enumerate(clean_probs)])

    # A (threshold 0.5) finds 7 of 10 spills; B (threshold 0.3, its own card's) finds those 7 and 3 more,
    # and flags one clean frame A does not
    a = frames([0.9] * 7 + [0.4] * 3, [0.1, 0.35, 0.2])
    b = frames([0.9] * 7 + [0.4] * 3, [0.1, 0.35, 0.2]) + [{"file": "only-b", "spill": True, "prob": 0.9}]
    pr = paired_outcomes(a, b, 0.5, 0.3)
    assert pr["spill"] == {"frames": 10, "found_only_by_A": 0, "found_only_by_B": 3, "p_value": pytest.approx(0.25)}
    assert pr["clean"] == {"frames": 3, "flagged_only_by_A": 0, "flagged_only_by_B": 1, "p_value": pytest.approx(1.0)}
    assert pr["unpaired_frames"] == 1


def _manifest(folder: Path) -> Path:
    (folder / "img").mkdir(parents=True)
    lines = []
    for i in range(12):
        name = f"img/s{i}.jpg"
        (folder / name).write_bytes(spill_jpeg(box=(0.05 * i % 0.5, 0.5, 0.05 * i % 0.5 + 0.4, 0.95)))
        lines.append({"file": name, "label": "spill", "split": "val"})
    for i in range(8):
        name = f"img/c{i}.jpg"
        (folder / name).write_bytes(clean_jpeg(320 + 8 * i, 240))
        lines.append({"file": name, "label": "clean", "split": "val"})
    m = folder / "manifest.jsonl"
    m.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return m


def _app() -> typer.Typer:
    from training.replay_commands import register

    app = typer.Typer()
    groups = {"models": typer.Typer()}
    app.add_typer(groups["models"], name="models")
    register(app, groups)
    return app


@pytest.mark.timeout(120)
def test_compare_two_models_and_promote_only_the_winner(tmp_path: Path) -> None:
    good = build_tiny_model(tmp_path / "cand", threshold=0.5, version="good", name="good")
    # same graph, threshold above every score it gives: misses every spill
    bad = build_tiny_model(tmp_path / "cur", threshold=0.999, version="bad", name="bad")
    target = tmp_path / "models" / "spillwatch.onnx"
    manifest = _manifest(tmp_path / "data")
    runner = CliRunner()

    # the worse candidate is not promoted: exit code 3, nothing copied
    out = tmp_path / "r1.json"
    r = runner.invoke(_app(), ["models", "compare", str(good), str(bad), "--manifest", str(manifest), "--out", str(out), "--promote", "--target", str(target)])
    assert r.exit_code == 3, r.output
    res = json.loads(out.read_text())
    assert res["verdict"]["promote"] is False and res["frames"]["recall"] == {"A": 1.0, "B": 0.0, "delta": -1.0, "better": "A"}
    assert res["promotion"]["promoted"] is False and not target.exists()
    for k in ("n", "tp", "fp", "tn", "fn", "precision", "recall", "f1", "fpr", "log_loss", "roc_auc", "pr_auc"):
        assert k in res["frames"]
    assert res["frames"]["roc_auc"]["A"] == res["frames"]["roc_auc"]["B"]  # same scores, other threshold
    assert (tmp_path / "r1.md").read_text().count("| recall |") == 1
    # every spill frame was found by A alone: far beyond chance (exact McNemar, 12 of 12 discordant)
    sp = res["paired"]["spill"]
    assert (sp["frames"], sp["found_only_by_A"], sp["found_only_by_B"]) == (12, 12, 0)
    assert sp["p_value"] == pytest.approx(2 * 0.5 ** 12) and res["paired"]["unpaired_frames"] == 0
    assert "12 found only by A" in (tmp_path / "r1.md").read_text()

    # the better candidate is promoted and loads from the target (sha256 checked against its card)
    out = tmp_path / "r2.json"
    r = runner.invoke(_app(), ["models", "compare", str(bad), str(good), "--manifest", str(manifest), "--out", str(out), "--promote", "--target", str(target)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["verdict"]["promote"] is True and res["promotion"]["promoted"] is True
    assert SpillModel.load(target).version == "good"


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_compare_with_replay_on_the_same_sequence(stack_settings: object, tmp_path: Path) -> None:
    """Both models replayed through the real pipeline on one labelled sequence: incident results side
    by side; the model that misses the spill loses on incident recall too."""
    from tests.helpers.replay import write_sequence
    from training.compare import compare_models

    good = build_tiny_model(tmp_path / "cand", threshold=0.5, version="good", name="good")
    bad = build_tiny_model(tmp_path / "cur", threshold=0.999, version="bad", name="bad")
    manifest = write_sequence(tmp_path / "seq")
    res = compare_models(bad, good, manifest, replay=True, settings=stack_settings, progress=False)
    inc = res["replay"]["incidents"]
    assert inc["recall"] == {"A": 0.0, "B": 1.0, "delta": 1.0, "better": "B"}
    assert inc["incidents"]["A"] == 0 and inc["incidents"]["B"] == 1
    assert res["replay"]["time_to_page_s"]["B"]["min"] == pytest.approx(1.0)
    assert res["verdict"]["promote"] is True and res["verdict"]["vetoes"] == []
