"""What the generator adds: the same recipe trained on synthetic only, real only and both (shorter
runs), each judged on the real val split (unseen session and liquid), the floor photos, the
same-scene clean frames and the held-out synthetic set (other floors, liquids, lighting, cameras).

Every arm picks its threshold with the real-val rule (recall target on the real val spills, floor
FPR cap) so the table also shows whether a val-chosen threshold transfers to another domain."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from spillwatch.model_card import Ablation, AblationArm, ModelCard, card_path_for, load_card
from training.train import TrainConfig, train

ARMS = {
    "synthetic only": {"use_real": False, "use_synthetic": True},
    "real only": {"use_real": True, "use_synthetic": False},
    "real + synthetic": {"use_real": True, "use_synthetic": True},
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
    a = ap.parse_args(argv)
    res = run_ablation(TrainConfig(real_manifest=a.manifest or default_real_manifest()), a.out, a.steps)
    if a.attach:
        attach_ablation(a.attach, res)
    print(json.dumps({k: v.model_dump(exclude={"synth_groups"}) for k, v in res.arms.items()}, indent=1))


if __name__ == "__main__":
    main()
