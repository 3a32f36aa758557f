"""Model card rendering (typed card -> Markdown). Pure formatting, one small file write."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spillwatch.model_card import Ablation, ModelCard, SetMetrics
from training.metrics import interval


def _f(v: Any, nd: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def metrics_table(m: Mapping[str, SetMetrics]) -> list[str]:
    rows = ["| set | n | recall | precision | FPR | floor FPR | ROC AUC | PR AUC | log loss |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, r in m.items():
        if name == "all-sources":  # mixes in-sample train frames: shown per source below
            continue
        rows.append(f"| {name} | {r.n} | {_f(r.recall)} | {_f(r.precision)} | {_f(r.fpr)} | "
                    f"{_f(r.floor_fpr)} | {_f(r.roc_auc)} | {_f(r.pr_auc)} | {_f(r.log_loss)} |")
    return rows


def groups_table(m: Mapping[str, SetMetrics]) -> list[str]:
    rows = ["| set / group | n | recall (spill) or FPR (clean) |", "|---|---|---|"]
    for name, r in m.items():
        for g, v in r.groups.items():
            rows.append(f"| {name} / {g} | {v.n} | {_f(v.recall if v.recall is not None else v.fpr)} |")
    return rows


def sources_table(m32: Mapping[str, SetMetrics], m8: Mapping[str, SetMetrics] | None = None, key: str = "all-sources") -> list[str]:
    """Every source and split (``<source>/<split>``; 'tune' = held out of train for the threshold, train
    rows are in-sample): n, recall (spill frames) or FPR (clean frames), ROC AUC, for fp32 (and int8)."""
    a = m32.get(key)
    if a is None or not a.sources:
        return []
    b = (m8 or {}).get(key)
    head = "| source / split | n | fp32 recall | fp32 FPR | fp32 ROC AUC |"
    sep = "|---|---|---|---|---|"
    if b is not None:
        head += " int8 recall | int8 FPR | int8 ROC AUC |"
        sep += "---|---|---|"
    rows = [head, sep]

    def cell(v: Any, num: int, den: int) -> str:
        ci = interval(num, den)
        return f"{_f(v)} ({num}/{den}; {ci[0]:.3f}-{ci[1]:.3f})" if v is not None and ci is not None else ""

    for k, r in a.sources.items():
        line = f"| {k} | {r.n} | {cell(r.recall, r.tp, r.spill)} | {cell(r.fpr, r.fp, r.clean)} | {_f(r.roc_auc)} |"
        if b is not None:
            q = b.sources.get(k)
            line += (f" {cell(q.recall, q.tp, q.spill)} | {cell(q.fpr, q.fp, q.clean)} | {_f(q.roc_auc)} |" if q else " | | |")
        rows.append(line)
    return rows


def ablation_table(ab: Ablation) -> list[str]:
    if any(r.sources for r in ab.arms.values()):
        return ingredients_table(ab)
    rows = ["| arm | steps | train s | threshold | val recall | val precision | val ROC AUC | floor FPR | scene-clean FPR"
            " | synth-val recall | synth-val FPR | synth-val AUC |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, r in ab.arms.items():
        rows.append(
            f"| {arm} | {r.steps} | {_f(r.train_seconds, 0)} | {_f(r.threshold)} | {_f(r.val_recall)} | "
            f"{_f(r.val_precision)} | {_f(r.val_roc_auc)} | {_f(r.floor_fpr)} | {_f(r.scene_clean_fpr)} | "
            f"{_f(r.synth_recall)} | {_f(r.synth_fpr)} | {_f(r.synth_roc_auc)} |")
    return rows


def ingredients_table(ab: Ablation) -> list[str]:
    def src(r: Any, key: str, field: str) -> str:
        v = r.sources.get(key)
        return _f(getattr(v, field)) if v is not None else "n/a"

    rows = ["| arm | steps | train s | threshold | spills-real val recall | val ROC AUC | floor FPR | wet-floors val recall | "
            "wet-floors val AUC | interiors val FPR | interiors val AUC | wet tune recall | interiors tune FPR | synth-val AUC |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, r in ab.arms.items():
        rows.append(
            f"| {arm} | {r.steps} | {_f(r.train_seconds, 0)} | {_f(r.threshold)} | {_f(r.val_recall)} | {_f(r.val_roc_auc)} | "
            f"{_f(r.floor_fpr)} | {src(r, 'wet-floor-stock/val', 'recall')} | {src(r, 'wet-floor-stock/val', 'roc_auc')} | "
            f"{src(r, 'interiors/val', 'fpr')} | {src(r, 'interiors/val', 'roc_auc')} | {src(r, 'wet-floor-stock/tune', 'recall')} | "
            f"{src(r, 'interiors/tune', 'fpr')} | {_f(r.synth_roc_auc)} |")
    return rows


def _counts(d: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "none"


def _settings(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items() if k not in ("progress",))


def render_markdown(fp32: ModelCard, int8: ModelCard | None = None) -> str:
    L: list[str] = [f"# SpillWatch model card — {fp32.version}", ""]
    if fp32.preliminary:
        L += ["> **PRELIMINARY** model: the pipeline works end to end, the figures below are real, but this is not the",
              "> final training run.", ""]
    if fp32.note:
        L += [fp32.note, ""]
    L += ["## Files", "", "| file | precision | sha256 | version |", "|---|---|---|---|"]
    for c in (fp32, int8):
        if c is not None:
            L.append(f"| {c.file} | {c.precision} | `{c.sha256}` | {c.version} |")
    g = fp32.map_size
    L += ["", "## Model", "",
          f"- Backbone: {fp32.backbone}; frame head (global pool -> linear) and a spill-map head "
          f"(stride-16 + stride-32 features -> per-cell logits, {g}x{g}), supervised by the polygon masks."]
    nm = fp32.normalisation
    if nm is not None:
        L += [f"- Input: uint8 RGB [N,{fp32.input_size},{fp32.input_size},3]; normalisation ({nm.name}: mean "
              f"{nm.mean_rgb_0_255}, std {nm.std_rgb_0_255} on 0..255), temperature and sigmoids are inside the graph.",
              f"- Preprocessing: {nm.resize}."]
    cal = fp32.calibration
    if cal is not None:
        L.append(f"- Calibration: {cal.method}, T = {_f(cal.temperature, 4)}, fitted on {', '.join(cal.fitted_on)} ({cal.weighting}).")
    t = fp32.threshold_choice
    L.append(f"- Decision threshold: **{_f(fp32.threshold, 4)}** ({t.rule if t else 'given'}); map threshold {fp32.map_threshold}.")
    if t is not None:
        for n in t.notes:
            L.append(f"  - {n}")
        L += ["", "Per-group thresholds that reach the recall target:", ""]
        for name, v in t.recall_thresholds.items():
            L.append(f"- {name}: {_f(v, 4)}")
        for name, v in (t.fpr_caps or {"floor": t.floor_threshold}).items():
            L.append(f"- false-positive cap '{name}': threshold {_f(v, 4)}")
        tr_set = fp32.training.settings if fp32.training else {}
        tune_cap = tr_set.get("max_tune_clean_fpr")
        L.append(f"  (caps: floor photos FPR <= {t.max_floor_fpr}, synthetic clean scenes FPR <= {t.max_synth_clean_fpr}"
                 + (f", held-out clean sets FPR <= {tune_cap}" if tune_cap is not None else "")
                 + ")")
    L += ["", "## Metrics at the threshold (ONNX Runtime)", ""]
    m32 = fp32.metrics.onnx_fp32 or {}
    L += ["fp32:", ""] + metrics_table(m32)
    if int8 is not None:
        L += ["", "int8:", ""] + metrics_table(int8.metrics.onnx_int8 or {})
        q = int8.quantisation
        if q is not None:
            tried = ", ".join(f"{x.fp32_nodes} {x.agreement:.3f}" for x in (q.selection.tried if q.selection else []))
            L += ["", f"int8: static {q.format}, {q.activations} activations / {q.weights} per-channel weights, "
                      f"{q.calibration} calibration on {q.calibration_frames} training frames; layers kept in fp32: "
                      f"{q.fp32_nodes} (chosen by decision agreement with fp32 on held-out training frames: {tried or 'n/a'})."]
        p = int8.parity.int8_vs_onnx_fp32
        if p is not None:
            L += ["", f"int8 vs fp32 on {p.n} val frames: decision agreement {_f(p.decision_agreement, 4)}, "
                      f"max |dp| {_f(p.max_abs_prob_diff, 4)}, map-cell agreement {_f(p.map_cell_agreement, 4)}."]
    p32 = fp32.parity.onnx_fp32_vs_torch
    if p32 is not None:
        L.append("")
        L.append(f"ONNX fp32 vs torch: max |dp| {_f(p32.max_abs_prob_diff, 6)}.")
    st = sources_table(m32, int8.metrics.onnx_int8 if int8 is not None else None)
    if st:
        L += ["", "Per source and split at the threshold ('tune' = held out of the train split to set the threshold; "
                  "train rows are in-sample; a one-class slice's ROC AUC ranks it against the other class of all frames; "
                  "each rate with its count and exact (Clopper-Pearson) 95 % interval: on a few dozen frames a rate is "
                  "a coarse reading):", ""] + st
    L += ["", "Groups (fp32):", ""] + groups_table({k: v for k, v in m32.items() if k != "all-sources"})
    if fp32.ablation is not None:
        L += ["", "## Ablation (same recipe, shorter runs; threshold chosen per arm by the same rule)", ""]
        L += ablation_table(fp32.ablation)
        L += [f"- {n}" for n in fp32.ablation.notes]
    d = fp32.data
    if d is not None:
        L += ["", "## Data", ""]
        if d.real_train is not None:
            L.append(f"- Real train ({', '.join(d.real_train.manifests) or 'no manifest'}): {_counts(d.real_train.by_split_source_label)}")
        if d.real_val is not None:
            L.append(f"- Real val: {_counts(d.real_val.by_split_source_label)}")
        for name, sv in (("Synthetic train", d.synthetic_train), ("Synthetic val", d.synthetic_val)):
            if sv is not None:
                L.append(f"- {name}: {sv.n} frames ({sv.spill} spill, {sv.clean} clean), seed {sv.seed}, "
                         f"{sv.size} px, generator {sv.generator}; liquids: {_counts(sv.liquids)}")
        if d.batch_mix is not None:
            bm = d.batch_mix
            L.append(f"- Batch mix: synthetic share {bm.synth_fraction}, clean share of real samples {bm.real_clean_fraction} "
                     f"(floor photos {bm.floor_share_of_clean} of those)")
    tr = fp32.training
    if tr is not None:
        L += ["", "## Training", "",
              f"- seed {tr.seed}, {tr.steps} steps ({tr.steps_per_epoch} per epoch), training {tr.train_seconds} s, "
              f"total {tr.total_seconds} s on {tr.machine} (torch {tr.torch}).",
              f"- settings: {_settings(tr.settings)}"]
    if fp32.created is not None:
        L.append(f"- created {fp32.created.isoformat()}")
    L += ["", "## Limits", "",
          "- Real data: one office building, five liquids; val is one capture sequence (cooking oil). The model is judged on",
          "  footage it has never seen; treat val figures as optimistic. Synthetic-val figures measure the generator's domain.",
          "- The spill map is coarse (cells of 16 input pixels); it localises, it does not segment.",
          ""]
    return "\n".join(L)


def write_markdown(path: Path, fp32: ModelCard, int8: ModelCard | None = None) -> None:
    path.write_text(render_markdown(fp32, int8))
