"""Re-pick the decision threshold of an exported model pair (fp32 + int8) without retraining: the
ONNX files do not change (temperature is in the graph, the threshold lives in the card), so only the
cards are rewritten: threshold, threshold choice, metrics at the threshold (ONNX fp32 and int8 on
the same evaluation sets as training) and the int8 decision agreement.

``python -m training.rethreshold --models runs/x [--epochs 11]`` with the training settings of the run
(the cards' recorded settings are used; the data are the same manifests)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from spillwatch.model_card import (
    Metrics,
    ModelCard,
    SetMetrics,
    ThresholdChoice,
    card_path_for,
    load_card,
)
from training.train import (
    EvalSet,
    TrainConfig,
    group_report,
    load_training_data,
    pick_threshold,
)


def config_from_card(card: ModelCard) -> TrainConfig:
    """The TrainConfig recorded in a card's training settings (paths resolved against the data root)."""
    from spillwatch.model_card import data_root
    from spillwatch.settings import REPO_ROOT

    def resolve_portable(v: str) -> Path:
        for root in (data_root(), REPO_ROOT):
            if (root / v).exists():
                return root / v
        return Path(v)

    assert card.training is not None
    st: dict[str, Any] = dict(card.training.settings)
    kw: dict[str, Any] = {}
    for f in fields(TrainConfig):
        if f.name not in st:
            continue
        v = st[f.name]
        if f.name in ("real_manifest",):
            kw[f.name] = resolve_portable(v) if v else None
        elif f.name in ("archives", "extra_manifests"):
            kw[f.name] = [resolve_portable(x) for x in v]
        elif f.name in ("out", "cache_dir", "resume"):
            kw[f.name] = Path(v) if v else None
        else:
            kw[f.name] = v
    kw["progress"] = False
    return TrainConfig(**kw)


def rethreshold_sets(cfg: TrainConfig) -> list[EvalSet]:
    """The evaluation sets of ``training.train.train`` (same names, same frames), loaded again by its
    own data stage (no synthetic training set, no composites: they are not evaluated)."""
    from dataclasses import replace

    return load_training_data(replace(cfg, synthetic=0, composites=0)).evaluation_sets(cfg)


def rethreshold(models: Path, stem: str = "spillwatch", overrides: dict[str, Any] | None = None) -> dict[str, ModelCard]:
    """Rewrite the cards in ``models`` with a threshold re-picked by ``pick_threshold`` (settings from
    the card, ``overrides`` on top, e.g. ``{"threshold_groups": "real"}``)."""
    from dataclasses import replace

    from training.card import write_markdown
    from training.export import ort_run, ort_session, parity

    p32, p8 = models / f"{stem}.onnx", models / f"{stem}-int8.onnx"
    c32 = load_card(p32)
    c8 = load_card(p8) if p8.is_file() else None
    cfg = replace(config_from_card(c32), **(overrides or {}))
    evs = rethreshold_sets(cfg)
    s32 = ort_session(p32)
    r32 = {e.name: ort_run(s32, e.images) for e in evs}
    choice = pick_threshold(cfg, evs, {k: v[0].astype(np.float64) for k, v in r32.items()})
    thr = choice.threshold
    tc = ThresholdChoice(rule=choice.rule, target_recall=cfg.target_recall, max_floor_fpr=cfg.max_floor_fpr,
                         recall_thresholds=choice.recall_thresholds, floor_threshold=choice.floor_threshold,
                         fpr_caps=choice.caps, max_synth_clean_fpr=cfg.max_synth_clean_fpr,
                         notes=choice.notes + [f"threshold re-picked from the exported ONNX fp32 scores (training.rethreshold, "
                                               f"threshold_groups={cfg.threshold_groups})"])
    m32 = {e.name: SetMetrics.model_validate(group_report(r32[e.name][0], e, thr)) for e in evs}
    out: dict[str, ModelCard] = {}
    upd = {"threshold": thr, "threshold_choice": tc}
    par = c32.parity
    m8: dict[str, SetMetrics] = {}
    if c8 is not None:
        s8 = ort_session(p8)
        r8 = {e.name: ort_run(s8, e.images) for e in evs}
        m8 = {e.name: SetMetrics.model_validate(group_report(r8[e.name][0], e, thr)) for e in evs}
        first = evs[0].name
        n = min(256, len(evs[0].images))
        par = par.model_copy(update={"int8_vs_onnx_fp32": parity(r32[first][0][:n], r32[first][1][:n], r8[first][0][:n],
                                                                  r8[first][1][:n], thr, c32.map_threshold)})
    out["fp32"] = c32.model_copy(update={**upd, "parity": par, "metrics": Metrics(onnx_fp32=m32)})
    out["fp32"].write(card_path_for(p32))
    if c8 is not None:
        out["int8"] = c8.model_copy(update={**upd, "parity": par, "metrics": Metrics(onnx_fp32=m32, onnx_int8=m8)})
        out["int8"].write(card_path_for(p8))
    write_markdown(models / "MODEL_CARD.md", out["fp32"], out.get("int8"))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--threshold-groups", default=None, help="'real' or 'real+synth' (default: as trained)")
    a = ap.parse_args(argv)
    cards = rethreshold(a.models, overrides={"threshold_groups": a.threshold_groups} if a.threshold_groups else None)
    c = cards["fp32"]
    print(f"threshold {c.threshold:.4f}: {c.threshold_choice.rule if c.threshold_choice else ''}")
    for n in (c.threshold_choice.notes if c.threshold_choice else []):
        print(" ", n)


if __name__ == "__main__":
    main()
