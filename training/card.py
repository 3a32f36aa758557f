"""Model card rendering (JSON card -> Markdown). Pure formatting, one small file write."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(v: Any, nd: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def metrics_table(m: dict[str, Any]) -> list[str]:
    rows = ["| set | n | recall | precision | FPR | floor FPR | ROC AUC | PR AUC | log loss |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, r in m.items():
        rows.append(f"| {name} | {r.get('n')} | {_f(r.get('recall'))} | {_f(r.get('precision'))} | {_f(r.get('fpr'))} | "
                    f"{_f(r.get('floor_fpr'))} | {_f(r.get('roc_auc'))} | {_f(r.get('pr_auc'))} | {_f(r.get('log_loss'))} |")
    return rows


def groups_table(m: dict[str, Any]) -> list[str]:
    rows = ["| set / group | n | recall (spill) or FPR (clean) |", "|---|---|---|"]
    for name, r in m.items():
        for g, v in (r.get("groups") or {}).items():
            val = v.get("recall", v.get("fpr"))
            rows.append(f"| {name} / {g} | {v['n']} | {_f(val)} |")
    return rows


def ablation_table(ab: dict[str, Any]) -> list[str]:
    rows = ["| arm | steps | train s | threshold | val recall | val precision | val ROC AUC | floor FPR | scene-clean FPR | synth-val recall | synth-val FPR | synth-val AUC |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, r in ab.get("arms", {}).items():
        rows.append(
            f"| {arm} | {r.get('steps')} | {_f(r.get('train_seconds'), 0)} | {_f(r.get('threshold'))} | {_f(r.get('val_recall'))} | "
            f"{_f(r.get('val_precision'))} | {_f(r.get('val_roc_auc'))} | {_f(r.get('floor_fpr'))} | {_f(r.get('scene_clean_fpr'))} | "
            f"{_f(r.get('synth_recall'))} | {_f(r.get('synth_fpr'))} | {_f(r.get('synth_roc_auc'))} |")
    return rows


def render_markdown(fp32: dict[str, Any], int8: dict[str, Any] | None = None) -> str:
    L: list[str] = [f"# SpillWatch model card — {fp32.get('version')}", ""]
    if fp32.get("preliminary"):
        L += ["> **PRELIMINARY** model: the pipeline works end to end, the figures below are real, but this is not the",
              "> final training run.", ""]
    if fp32.get("note"):
        L += [str(fp32["note"]), ""]
    L += ["## Files", "", "| file | precision | sha256 | version |", "|---|---|---|---|"]
    for c in (fp32, int8):
        if c:
            L.append(f"| {c.get('file')} | {c.get('precision')} | `{c.get('sha256')}` | {c.get('version')} |")
    t = fp32.get("threshold_choice", {})
    cal = fp32.get("calibration", {})
    L += ["", "## Model", "",
          f"- Backbone: {fp32.get('backbone')}; frame head (global pool -> linear) and a spill-map head "
          f"(stride-16 + stride-32 features -> per-cell logits, {fp32.get('map_size')}x{fp32.get('map_size')}), "
          "supervised by the polygon masks.",
          f"- Input: uint8 RGB [N,{fp32.get('input_size')},{fp32.get('input_size')},3]; normalisation "
          f"({fp32.get('normalisation', {}).get('name')}: mean {fp32.get('normalisation', {}).get('mean_rgb_0_255')}, "
          f"std {fp32.get('normalisation', {}).get('std_rgb_0_255')} on 0..255), temperature and sigmoids are inside the graph.",
          f"- Preprocessing: {fp32.get('normalisation', {}).get('resize')}.",
          f"- Calibration: {cal.get('method')}, T = {_f(cal.get('temperature'), 4)}, fitted on {cal.get('fitted_on')} ({cal.get('weighting')}).",
          f"- Decision threshold: **{_f(fp32.get('threshold'), 4)}** ({t.get('rule')}); map threshold {fp32.get('map_threshold')}.",
          ]
    for n in t.get("notes") or []:
        L.append(f"  - note: {n}")
    L += ["", "Per-group thresholds that reach the recall target:", ""]
    for g, v in (t.get("recall_thresholds") or {}).items():
        L.append(f"- {g}: {_f(v, 4)}")
    for name, v in (t.get("fpr_caps") or {"floor": t.get("floor_threshold")}).items():
        L.append(f"- false-positive cap '{name}': threshold {_f(v, 4)}")
    L.append(f"  (caps: floor photos FPR <= {t.get('max_floor_fpr')}, synthetic clean scenes FPR <= {t.get('max_synth_clean_fpr')})")
    L += ["", "## Metrics at the threshold (ONNX Runtime)", ""]
    m32 = fp32.get("metrics", {}).get("onnx_fp32", {})
    L += ["fp32:", ""] + metrics_table(m32)
    if int8:
        L += ["", "int8:", ""] + metrics_table(int8.get("metrics", {}).get("onnx_int8", {}))
        q = int8.get("quantisation", {})
        L += ["", f"int8: static QDQ, {q.get('activations')} activations / {q.get('weights')} per-channel weights, "
                  f"{q.get('calibration')} calibration on {q.get('calibration_frames')} real training frames; layers kept in fp32: "
                  f"{q.get('fp32_nodes')} (chosen on held-out training frames: {[(x['fp32_nodes'], round(x['agreement'], 4)) for x in q.get('selection', {}).get('tried', [])]})."]
        p = int8.get("parity", {}).get("int8_vs_onnx_fp32", {})
        L += ["", f"int8 vs fp32 on {p.get('n')} val frames: decision agreement {_f(p.get('decision_agreement'), 4)}, "
                  f"max |dp| {_f(p.get('max_abs_prob_diff'), 4)}, map-cell agreement {_f(p.get('map_cell_agreement'), 4)}."]
    p32 = fp32.get("parity", {}).get("onnx_fp32_vs_torch", {})
    L += [f"ONNX fp32 vs torch: max |dp| {_f(p32.get('max_abs_prob_diff'), 6)}.", "", "Groups (fp32):", ""] + groups_table(m32)
    if fp32.get("ablation"):
        L += ["", "## Ablation (same recipe, shorter runs; threshold chosen per arm by the same rule)", ""]
        L += ablation_table(fp32["ablation"])
        for n in fp32["ablation"].get("notes", []):
            L.append(f"- {n}")
    d = fp32.get("data", {})
    tr = fp32.get("training", {})
    L += ["", "## Data", "",
          f"- Real train: {d.get('real_train', {}).get('by_split_source_label')}",
          f"- Real val: {d.get('real_val', {}).get('by_split_source_label')} (only 6 same-scene clean frames: precision/FPR there are coarse)",
          f"- Synthetic train: {d.get('synthetic_train')}",
          f"- Synthetic val: {d.get('synthetic_val')}",
          f"- Batch mix: {d.get('batch_mix')}",
          "", "## Training", "",
          f"- seed {tr.get('seed')}, {tr.get('steps')} steps ({tr.get('steps_per_epoch')} per epoch), training {tr.get('train_seconds')} s, "
          f"total {tr.get('total_seconds')} s on {tr.get('machine')} (torch {tr.get('torch')}).",
          f"- settings: `{tr.get('settings')}`",
          f"- created {fp32.get('created')}",
          "", "## Limits", "",
          "- Real data: one office building, five liquids; val is one capture sequence (cooking oil). The model is judged on",
          "  footage it has never seen; treat val figures as optimistic. Synthetic-val figures measure the generator's domain.",
          "- The spill map is coarse (cells of 16 input pixels); it localises, it does not segment.",
          ""]
    return "\n".join(L)


def write_markdown(path: Path, fp32: dict[str, Any], int8: dict[str, Any] | None = None) -> None:
    path.write_text(render_markdown(fp32, int8))
