"""What the generator adds: the same recipe trained on synthetic only, real only and both (shorter
runs), each judged on the real val split (unseen session and liquid), the floor photos, the
same-scene clean frames and the held-out synthetic set (other floors, liquids, lighting, cameras).

Every arm picks its threshold with the real-val rule (recall target on the real val spills, floor
FPR cap) so the table also shows whether a val-chosen threshold transfers to another domain."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from spillwatch.model_card import Ablation, AblationArm, ModelCard, card_path_for, load_card
from training.train import TrainConfig, train

ARMS: dict[str, dict[str, Any]] = {
    "synthetic only": {"use_real": False, "use_synthetic": True},
    "real only": {"use_real": True, "use_synthetic": False},
    "real + synthetic": {"use_real": True, "use_synthetic": True},
}

#: What each ingredient of the shipped recipe adds: cumulative arms, identical step budgets. Every arm
#: is judged on the same sets (the extra sets' tune part and val split are evaluated in every arm; the
#: tune part sets the threshold in every arm, by the shipped rule).
INGREDIENT_ARMS: dict[str, dict[str, Any]] = {
    "spills-real + generator (no window reflections)": {"train_on_extra": False, "composites": 0, "synth_exclude": ["window"]},
    "+ window/lamp reflections": {"train_on_extra": False, "composites": 0},
    "+ wet-floors/interiors train": {"train_on_extra": True, "composites": 0},
    "+ composited real liquids (previous recipe)": {"train_on_extra": True, "composites": 1500},
}


def arm_row(card: ModelCard) -> AblationArm:
    m = card.metrics.onnx_fp32 or {}
    rv, sv = m.get("real-val"), m.get("synthetic-val")
    scene = rv.groups.get("clean:scene") if rv is not None else None
    assert card.training is not None
    return AblationArm(
        steps=card.training.steps,
        train_seconds=card.training.train_seconds,
        threshold=card.threshold,
        val_recall=rv.recall if rv else None,
        val_precision=rv.precision if rv else None,
        val_roc_auc=rv.roc_auc if rv else None,
        val_pr_auc=rv.pr_auc if rv else None,
        floor_fpr=rv.floor_fpr if rv else None,
        scene_clean_fpr=scene.fpr if scene else None,
        synth_recall=sv.recall if sv else None,
        synth_fpr=sv.fpr if sv else None,
        synth_roc_auc=sv.roc_auc if sv else None,
        synth_groups=sv.groups if sv else {},
        sources={**(m["tune"].sources if "tune" in m else {}), **(m["extra-val"].sources if "extra-val" in m else {})},
        version=card.version,
    )


def run_ablation(base: TrainConfig, out: Path, steps: int, arms: list[str] | None = None) -> Ablation:
    out.mkdir(parents=True, exist_ok=True)
    res = Ablation(steps=steps, threshold_rule="real val groups (target recall) + floor FPR cap")
    for name in arms or list(ARMS):
        flags = ARMS[name]
        cfg = replace(base, out=out / name.replace(" ", "").replace("+", "-"), max_steps=steps, epochs=1000.0,
                      threshold_groups="real", export_int8=False, preliminary=True,
                      note=f"ablation arm '{name}' ({steps} steps)", **flags)
        res.arms[name] = arm_row(train(cfg))
        (out / "ablation.json").write_text(res.model_dump_json(indent=2))
    return res


def run_ingredients(base: TrainConfig, out: Path, steps: int, arms: list[str] | None = None) -> Ablation:
    """The shipped recipe's ingredients added one by one (``INGREDIENT_ARMS``), ``steps`` each."""
    out.mkdir(parents=True, exist_ok=True)
    res = Ablation(steps=steps, threshold_rule="shipped rule: recall targets (real val 0.97, wet-floor tune part 0.8) + "
                                               "FPR caps (floor photos, synthetic clean, interiors tune part)")
    for i, name in enumerate(arms or list(INGREDIENT_ARMS)):
        cfg = replace(base, out=out / f"arm{i}", max_steps=steps, epochs=1000.0, export_int8=False, preliminary=True,
                      report_all_sources=False, note=f"ablation arm '{name}' ({steps} steps)", **INGREDIENT_ARMS[name])
        res.arms[name] = arm_row(train(cfg))
        (out / "ablation.json").write_text(res.model_dump_json(indent=2))
    return res


def attach_ablation(models_dir: Path, ablation: Ablation, stem: str = "spillwatch") -> None:
    """Record the ablation in the shipped cards (JSON + Markdown); the model files are untouched."""
    from training.card import write_markdown

    cards: dict[str, ModelCard] = {}
    for prec, name in (("fp32", f"{stem}.onnx"), ("int8", f"{stem}-int8.onnx")):
        model = models_dir / name
        if card_path_for(model).is_file():
            cards[prec] = load_card(model).model_copy(update={"ablation": ablation})
            cards[prec].write(card_path_for(model))
    if "fp32" in cards:
        write_markdown(models_dir / "MODEL_CARD.md", cards["fp32"], cards.get("int8"))


def main(argv: list[str] | None = None) -> None:
    """``python -m training.ablation [--steps 300] [--out runs/ablation] [--attach models]``"""
    import argparse

    from training.datasets import default_real_manifest

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--manifest", type=Path, default=None)
    ap.add_argument("--attach", type=Path, default=None, help="write the result into the cards in this folder")
    ap.add_argument("--ingredients", action="store_true", help="the shipped recipe's ingredients one by one (INGREDIENT_ARMS)")
    a = ap.parse_args(argv)
    if a.ingredients:
        from training.datasets import default_extra_manifests

        base = TrainConfig(real_manifest=a.manifest or default_real_manifest(), extra_manifests=default_extra_manifests())
        res = run_ingredients(base, a.out, a.steps)
    else:
        res = run_ablation(TrainConfig(real_manifest=a.manifest or default_real_manifest()), a.out, a.steps)
    if a.attach:
        attach_ablation(a.attach, res)
    print(json.dumps({k: v.model_dump(exclude={"synth_groups"}) for k, v in res.arms.items()}, indent=1))


if __name__ == "__main__":
    main()
