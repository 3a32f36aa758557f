"""``spillwatch evaluate``: run the ONNX model over a manifest (exactly the runtime path: JPEG bytes ->
SpillModel.preprocess_jpeg -> infer) and write metrics JSON, plus an optional report folder (ROC/PR
curves as CSV/JSON/PNG, confusion matrix, predictions, Markdown summary with the worst errors drawn
with their spill maps).

The report holds images derived from the evaluated frames: for the real data set it must be written
OUTSIDE the repository (the data's licence forbids copies in the product)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spillwatch.model import ImageDecodeError, SpillModel
from spillwatch.model_card import portable_path
from training import metrics
from training.datasets import Record, load_manifest


@dataclass
class Scored:
    records: list[Record]
    probs: np.ndarray          # float64 [N]
    maps: np.ndarray           # float32 [N,G,G]
    skipped: list[dict[str, str]]


def score_records(model: SpillModel, records: Sequence[Record], batch: int = 16, progress: bool = False) -> Scored:
    from tqdm import tqdm

    kept: list[Record] = []
    probs: list[float] = []
    maps: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    pending: list[tuple[Record, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        preds = model.infer(np.stack([x for _, x in pending]))
        for (rec, _), p in zip(pending, preds, strict=True):
            kept.append(rec)
            probs.append(p.spill_prob)
            maps.append(p.spill_map)
        pending.clear()

    for rec in tqdm(records, desc="evaluate", disable=not progress):
        try:
            x = model.preprocess_jpeg(rec.path.read_bytes())
        except (ImageDecodeError, OSError) as exc:
            skipped.append({"file": str(rec.path), "reason": str(exc)})
            continue
        pending.append((rec, x))
        if len(pending) >= batch:
            flush()
    flush()
    g = model.card.map_size
    return Scored(kept, np.asarray(probs, np.float64),
                  np.stack(maps) if maps else np.zeros((0, g, g), np.float32), skipped)


def group_metrics(records: Sequence[Record], probs: np.ndarray, threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for gname in sorted({r.group for r in records}):
        idx = np.array([r.group == gname for r in records])
        n = int(idx.sum())
        hits = int(np.sum(probs[idx] >= threshold))
        key = "recall" if gname.startswith("spill") else "fpr"
        out[gname] = {"n": n, key: hits / n if n else None}
    return out


def expand_manifests(paths: Path | str | Sequence[Path | str]) -> list[Path]:
    """Manifests to evaluate: each path is a manifest (JSON lines) or a list file (one manifest path a
    line, relative to the list file's folder; blank lines and ``#`` comments are skipped)."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        lines = [x.strip() for x in p.read_text(encoding="utf-8").splitlines()]
        first = next((x for x in lines if x and not x.startswith("#")), "")
        if first.startswith("{") or not first:
            out.append(p)
            continue
        out += [(p.parent / x) for x in lines if x and not x.startswith("#")]
    for m in out:
        if not m.is_file():
            raise FileNotFoundError(f"manifest not found: {m}")
    return out


def evaluate(manifest: Path | str | Sequence[Path | str], model_path: Path, threshold: float | None = None,
             split: str | None = None, report_dir: Path | None = None, threads: int = 2, progress: bool = True,
             worst: int = 4, frame_scores: bool = False) -> dict[str, Any]:
    """Metrics of the model over one or several manifests (or list files) taken together, with a
    per-source table (``sources``: each source and split) and a per-data-set table (``datasets``).
    ``frame_scores``: also each frame's file, label and score (``frame_scores``: what a paired
    comparison of two models on the same frames needs)."""
    model = SpillModel.load(model_path, threads=threads)
    manifests = expand_manifests(manifest)
    records = [r for m in manifests for r in load_manifest(m)]
    if split:
        records = [r for r in records if r.split == split]
    thr = model.threshold if threshold is None else float(threshold)
    sc = score_records(model, records, progress=progress)
    y = np.array([r.y for r in sc.records], np.int64)
    res: dict[str, Any] = metrics.summary(y, sc.probs, thr)
    floor = np.array([r.is_floor for r in sc.records], bool)
    res.update({
        "model": portable_path(model_path), "model_version": model.version,
        "manifest": portable_path(manifests[0]) if len(manifests) == 1 else None,
        "manifests": [portable_path(m) for m in manifests], "split": split,
        "threshold_source": "card" if threshold is None else "option",
        "skipped": sc.skipped, "n_skipped": len(sc.skipped),
        "floor_fpr": float(np.mean(sc.probs[floor] >= thr)) if floor.any() else None,
        "floor_n": int(floor.sum()),
        "groups": group_metrics(sc.records, sc.probs, thr),
        "sources": metrics.with_intervals(metrics.slice_metrics(y, sc.probs, [r.source_split for r in sc.records], thr)),
        "datasets": metrics.with_intervals(metrics.slice_metrics(y, sc.probs, [r.dataset for r in sc.records], thr)),
    })
    if frame_scores:
        res["frame_scores"] = [{"file": str(r.path), "spill": bool(t), "prob": float(pr)}
                               for r, t, pr in zip(sc.records, y, sc.probs, strict=True)]
    if report_dir is not None:
        write_report(Path(report_dir), res, sc, y, thr, model)
    return res


def slice_table(rows: dict[str, dict[str, Any]], title: str = "source / split") -> list[str]:
    """Markdown rows (``metrics.with_intervals`` rows, as ``evaluate`` gives them): n, spill/clean, recall
    and FPR each with its exact 95 % interval (how far a rate on a few dozen frames can be trusted),
    precision, ROC AUC per slice."""
    def f(v: Any) -> str:
        return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    def rate(v: float | None, ci: list[float] | None) -> str:
        return "n/a" if v is None or ci is None else f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

    out = [f"| {title} | n | spill | clean | recall [95 % CI] | FPR [95 % CI] | precision | ROC AUC |",
           "|---|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        out.append(f"| {k} | {r['n']} | {r['spill']} | {r['clean']} | {rate(r['recall'], r['recall_interval'])} | "
                   f"{rate(r['fpr'], r['fpr_interval'])} | {f(r['precision'])} | {f(r['roc_auc'])} |")
    return out


# ------------------------------------------------------------------ report
def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)


def draw_prediction(img_bgr: np.ndarray, spill_map: np.ndarray, prob: float, threshold: float, map_threshold: float,
                    label: str) -> np.ndarray:
    """The frame with the spill map as a red heat overlay, cells >= map_threshold outlined, and the score."""
    h, w = img_bgr.shape[:2]
    heat = cv2.resize(spill_map.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    out = img_bgr.astype(np.float32)
    red = np.zeros_like(out)
    red[..., 2] = 255
    a = (0.55 * heat)[..., None]
    out = (out * (1 - a) + red * a).astype(np.uint8)
    g = spill_map.shape[0]
    for (cy, cx) in zip(*np.nonzero(spill_map >= map_threshold), strict=True):
        x0, y0 = int(cx * w / g), int(cy * h / g)
        x1, y1 = int((cx + 1) * w / g), int((cy + 1) * h / g)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 255), 1)
    text = f"{label} p={prob:.3f} thr={threshold:.3f}"
    cv2.rectangle(out, (0, 0), (min(w, 10 + 8 * len(text)), 20), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _plot_curves(report: Path, roc: list[dict[str, Any]], pr: list[dict[str, Any]], res: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    pts = [(p["fpr"], p["tpr"]) for p in roc if p["fpr"] is not None and p["tpr"] is not None]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=2)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (recall)")
    ax.set_title(f"ROC (AUC {res['roc_auc']:.3f})" if res["roc_auc"] is not None else "ROC (AUC undefined)")
    if res["fpr"] is not None and res["recall"] is not None:
        ax.plot([res["fpr"]], [res["recall"]], "o", c="red", label=f"threshold {res['threshold']:.3f}")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(report / "roc.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    pts = [(p["recall"], p["precision"]) for p in pr if p["recall"] is not None and p["precision"] is not None]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=2)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"PR (AP {res['pr_auc']:.3f})" if res["pr_auc"] is not None else "PR (AP undefined)")
    if res["precision"] is not None and res["recall"] is not None:
        ax.plot([res["recall"]], [res["precision"]], "o", c="red", label=f"threshold {res['threshold']:.3f}")
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(report / "pr.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    cm = np.array([[res["tn"], res["fp"]], [res["fn"], res["tp"]]])
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=14,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks([0, 1], ["pred clean", "pred spill"])
    ax.set_yticks([0, 1], ["clean", "spill"])
    ax.set_title("confusion matrix")
    fig.tight_layout()
    fig.savefig(report / "confusion.png", dpi=110)
    plt.close(fig)


def write_report(report: Path, res: dict[str, Any], sc: Scored, y: np.ndarray, thr: float, model: SpillModel,
                 worst: int = 4) -> None:
    report.mkdir(parents=True, exist_ok=True)
    roc = metrics.roc_curve(y, sc.probs)
    pr = metrics.pr_curve(y, sc.probs)
    jroc = [{**p, "threshold": None if p["threshold"] == float("inf") else p["threshold"]} for p in roc]
    (report / "roc.json").write_text(json.dumps(jroc))
    (report / "pr.json").write_text(json.dumps(pr))
    _write_csv(report / "roc.csv", jroc)
    _write_csv(report / "pr.csv", pr)
    (report / "confusion.json").write_text(json.dumps({k: res[k] for k in ("tp", "fp", "tn", "fn", "threshold")}))
    _write_csv(report / "predictions.csv", [
        {"file": str(r.path), "label": r.label, "group": r.group, "spill_prob": f"{p:.6f}", "decision": "spill" if p >= thr else "clean"}
        for r, p in zip(sc.records, sc.probs, strict=True)])
    (report / "metrics.json").write_text(json.dumps(res, indent=2))
    _plot_curves(report, roc, pr, res)

    fn_idx = [i for i in np.argsort(sc.probs) if y[i] == 1 and sc.probs[i] < thr][:worst]
    fp_idx = [i for i in np.argsort(-sc.probs) if y[i] == 0 and sc.probs[i] >= thr][:worst]
    # with no errors, still show the hardest cases (lowest-scored spills, highest-scored clean frames)
    hard_pos = [i for i in np.argsort(sc.probs) if y[i] == 1][:worst] if not fn_idx else []
    hard_neg = [i for i in np.argsort(-sc.probs) if y[i] == 0][:worst] if not fp_idx else []
    (report / "examples").mkdir(exist_ok=True)

    def draw(kind: str, idxs: Sequence[int]) -> list[str]:
        lines = []
        for rank, i in enumerate(idxs):
            rec = sc.records[i]
            img = cv2.imdecode(np.frombuffer(rec.path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            if img is None:
                continue
            name = f"examples/{kind}_{rank + 1}.jpg"
            cv2.imwrite(str(report / name), draw_prediction(img, sc.maps[i], float(sc.probs[i]), thr, model.map_threshold, rec.label))
            lines.append(f"| ![{kind} {rank + 1}]({name}) | `{rec.path.name}` | {rec.group} | {sc.probs[i]:.4f} |")
        return lines

    def f(v: Any) -> str:
        return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    md = [f"# Evaluation — {res['model_version']}", "",
          f"- manifests: {', '.join(f'`{m}`' for m in res['manifests'])} (split: {res['split'] or 'all'}), n = {res['n']}, "
          f"skipped (undecodable) = {res['n_skipped']}",
          f"- threshold: {thr:.4f} ({res['threshold_source']})", "",
          "| metric | value |", "|---|---|"]
    for k in ("accuracy", "precision", "recall", "f1", "specificity", "npv", "fpr", "fnr", "log_loss", "roc_auc", "pr_auc", "floor_fpr"):
        md.append(f"| {k} | {f(res.get(k))} |")
    md += ["", f"Confusion matrix: TP {res['tp']}, FP {res['fp']}, TN {res['tn']}, FN {res['fn']} (![confusion](confusion.png))", "",
           "| group | n | recall / FPR |", "|---|---|---|"]
    for g, v in res["groups"].items():
        md.append(f"| {g} | {v['n']} | {f(v.get('recall', v.get('fpr')))} |")
    md += ["", "Per source (a one-class source's ROC AUC ranks it against the other class of all frames):", ""]
    md += slice_table(res["sources"]) + [""] + slice_table(res["datasets"], "data set")
    md += ["", "![ROC](roc.png) ![PR](pr.png)", "", "Curves as data: roc.csv/roc.json, pr.csv/pr.json; per-frame scores: predictions.csv.", ""]
    for title, kind, idxs in (("Worst false negatives", "fn", fn_idx), ("Worst false positives", "fp", fp_idx),
                              ("Hardest spills (no false negatives at this threshold)", "hardpos", hard_pos),
                              ("Hardest clean frames (no false positives at this threshold)", "hardneg", hard_neg)):
        if not idxs:
            continue
        md += [f"## {title}", "", "Red overlay = spill map; yellow boxes = cells >= map threshold.", "",
               "| frame | file | group | spill_prob |", "|---|---|---|---|"] + draw(kind, idxs) + [""]
    (report / "summary.md").write_text("\n".join(md))
