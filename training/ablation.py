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

from training.train import TrainConfig, train

ARMS = {
    "synthetic only": {"use_real": False, "use_synthetic": True},
    "real only": {"use_real": True, "use_synthetic": False},
    "real + synthetic": {"use_real": True, "use_synthetic": True},
}


def arm_row(card: dict[str, Any]) -> dict[str, Any]:
    m = card["metrics"]["onnx_fp32"]
    rv = m.get("real-val", {})
    sv = m.get("synthetic-val", {})
    rg = rv.get("groups", {})
    return {
        "steps": card["training"]["steps"],
        "train_seconds": card["training"]["train_seconds"],
        "threshold": card["threshold"],
        "val_recall": rv.get("recall"),
        "val_precision": rv.get("precision"),
        "val_roc_auc": rv.get("roc_auc"),
        "val_pr_auc": rv.get("pr_auc"),
        "floor_fpr": rv.get("floor_fpr"),
        "scene_clean_fpr": rg.get("clean:scene", {}).get("fpr"),
        "synth_recall": sv.get("recall"),
        "synth_fpr": sv.get("fpr"),
        "synth_roc_auc": sv.get("roc_auc"),
        "synth_groups": sv.get("groups"),
        "version": card.get("version"),
    }


def run_ablation(base: TrainConfig, out: Path, steps: int, arms: list[str] | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"steps": steps, "threshold_rule": "real val groups (target recall) + floor FPR cap", "arms": {}}
    for name in arms or list(ARMS):
        flags = ARMS[name]
        cfg = replace(base, out=out / name.replace(" ", "").replace("+", "-"), max_steps=steps, epochs=1000.0,
                      threshold_groups="real", export_int8=False, preliminary=True,
                      note=f"ablation arm '{name}' ({steps} steps)", **flags)
        card = train(cfg)
        res["arms"][name] = arm_row(card)
        (out / "ablation.json").write_text(json.dumps(res, indent=2))
    return res


def attach_ablation(models_dir: Path, ablation: dict[str, Any], stem: str = "spillwatch") -> None:
    """Record the ablation in the shipped cards (JSON + Markdown); the model files are untouched."""
    from training.card import write_markdown

    cards = {}
    for prec, name in (("fp32", f"{stem}.card.json"), ("int8", f"{stem}-int8.card.json")):
        p = models_dir / name
        if p.is_file():
            c = json.loads(p.read_text())
            c["ablation"] = ablation
            p.write_text(json.dumps(c, indent=2) + "\n")
            cards[prec] = c
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
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "synth_groups"} for k, v in res["arms"].items()}, indent=1))


if __name__ == "__main__":
    main()
