"""``spillwatch models compare A B``: both models on the same evaluation set (and optionally the same
replay), every metric side by side, and whether B may replace A.

Promotion rule (``verdict``, pure). A is the current model, B the candidate; each is judged at its
own model card's threshold (the threshold it would run with):

1. frame recall decides first: B promoted if its recall is higher by more than ``eps``, rejected if
   lower by more than ``eps``;
2. on a recall tie (within ``eps``): precision, then false-positive rate, decide the same way;
   everything tied -> A stays (a candidate must *beat* the current model);
3. guards that veto a win: B's hard-negative floor FPR must not exceed A's by more than ``eps``, and
   when replayed, B's incident recall must not be lower and its false incidents per camera-hour
   not higher than A's;
4. beyond chance: with both models' frame scores (``compare_models`` always has them), a step that
   B wins counts only if the frames both scored show it beyond chance: the exact McNemar test of
   the frames exactly one model gets right, p < ``alpha`` (0.05); recall on the spill frames,
   precision and FPR on the clean frames. Otherwise that step is a tie and the next one decides.
   A loss beyond ``eps`` still rejects B, chance or not (a candidate must not miss more spills).
   On a few dozen frames a difference of two or three is what two equal models show (0 against 3
   discordant frames: p = 0.25).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spillwatch.logs import get_logger

log = get_logger("training.compare")

FRAME_KEYS = (
    "n", "threshold", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "f1", "specificity", "npv",
    "fpr", "fnr", "log_loss", "roc_auc", "pr_auc", "floor_fpr",
)
HIGHER_IS_BETTER = {"accuracy", "precision", "recall", "f1", "specificity", "npv", "roc_auc", "pr_auc", "tp", "tn", "detected_segments"}
LOWER_IS_BETTER = {"fpr", "fnr", "log_loss", "floor_fpr", "fp", "fn", "false_incidents", "false_incidents_per_camera_hour"}
REPLAY_KEYS = ("recall", "detected_segments", "spill_segments", "incidents", "false_incidents", "false_incidents_per_camera_hour")
EPS = 0.005
ALPHA = 0.05


def side_by_side(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for k in keys:
        va, vb = a.get(k), b.get(k)
        delta = (vb - va) if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        better = None
        if delta is not None and delta != 0:
            if k in HIGHER_IS_BETTER:
                better = "B" if delta > 0 else "A"
            elif k in LOWER_IS_BETTER:
                better = "B" if delta < 0 else "A"
        out[k] = {"A": va, "B": vb, "delta": delta, "better": better}
    return out


def _cmp(a: float | None, b: float | None, higher_better: bool, eps: float) -> int | None:
    """+1: B better, -1: B worse, 0: tie, None: not comparable."""
    if a is None or b is None:
        return None
    d = (b - a) if higher_better else (a - b)
    return 1 if d > eps else (-1 if d < -eps else 0)


def paired_outcomes(scores_a: list[dict[str, Any]], scores_b: list[dict[str, Any]], threshold_a: float,
                    threshold_b: float) -> dict[str, Any]:
    """Each model at its own threshold on the frames both scored (``evaluate(frame_scores=True)``,
    matched by file): the spill frames only one of them found, the clean frames only one of them
    flagged, and the exact McNemar p-value of each split."""
    from training.metrics import mcnemar_p

    by_file = {f["file"]: f for f in scores_b}
    spill: dict[str, Any] = {"frames": 0, "found_only_by_A": 0, "found_only_by_B": 0}
    clean: dict[str, Any] = {"frames": 0, "flagged_only_by_A": 0, "flagged_only_by_B": 0}
    paired = 0
    for fa in scores_a:
        fb = by_file.get(fa["file"])
        if fb is None or fb["spill"] != fa["spill"]:
            continue
        paired += 1
        hit_a, hit_b = fa["prob"] >= threshold_a, fb["prob"] >= threshold_b
        side = spill if fa["spill"] else clean
        side["frames"] += 1
        if hit_a != hit_b:
            who = "A" if hit_a else "B"
            side[("found_only_by_" if fa["spill"] else "flagged_only_by_") + who] += 1
    spill["p_value"] = mcnemar_p(spill["found_only_by_A"], spill["found_only_by_B"])
    clean["p_value"] = mcnemar_p(clean["flagged_only_by_A"], clean["flagged_only_by_B"])
    return {"spill": spill, "clean": clean, "unpaired_frames": len(scores_a) + len(scores_b) - 2 * paired}


def verdict(
    a: dict[str, Any],
    b: dict[str, Any],
    replay_a: dict[str, Any] | None = None,
    replay_b: dict[str, Any] | None = None,
    eps: float = EPS,
    paired: dict[str, Any] | None = None,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """Whether B replaces A (rule in the module docstring). ``a``/``b``: evaluate JSON; ``replay_*``:
    the replay reports' ``incidents`` sections; ``paired``: ``paired_outcomes`` of the two models."""
    steps: list[dict[str, Any]] = []
    decided: tuple[bool, str] | None = None
    within_chance: list[str] = []
    for key, hb in (("recall", True), ("precision", True), ("fpr", False)):
        c = _cmp(a.get(key), b.get(key), hb, eps)
        step = {"metric": key, "A": a.get(key), "B": b.get(key), "result": {1: "B better", -1: "B worse", 0: "tie", None: "n/a"}[c]}
        steps.append(step)
        test = None if paired is None else paired["spill" if key == "recall" else "clean"]
        if test is not None:
            step["p_value"] = test["p_value"]
            if c == 1 and test["p_value"] >= alpha:
                step["result"] = "B better, within chance"
                within_chance.append(f"{key} (p = {test['p_value']:.3g})")
                continue
        if c == 1:
            decided = (True, f"B has the better {key} ({b.get(key):.4f} vs {a.get(key):.4f})")
            break
        if c == -1:
            decided = (False, f"B has the worse {key} ({b.get(key):.4f} vs {a.get(key):.4f})")
            break
    if decided is None:
        decided = (False, "no metric improves beyond the tolerance" + (
            f" and beyond chance (B's lead in {', '.join(within_chance)} is what two equal models show)" if within_chance else "")
            + ": the current model stays")
    promote, reason = decided
    vetoes: list[str] = []
    if promote:
        if _cmp(a.get("floor_fpr"), b.get("floor_fpr"), False, eps) == -1:
            vetoes.append(f"hard-negative floor FPR rises ({a.get('floor_fpr')} -> {b.get('floor_fpr')})")
        if replay_a is not None and replay_b is not None:
            if _cmp(replay_a.get("recall"), replay_b.get("recall"), True, 0.0) == -1:
                vetoes.append(f"replay incident recall drops ({replay_a.get('recall')} -> {replay_b.get('recall')})")
            if _cmp(replay_a.get("false_incidents_per_camera_hour"), replay_b.get("false_incidents_per_camera_hour"), False, 1e-9) == -1:
                vetoes.append(
                    "replay false incidents per camera-hour rise "
                    f"({replay_a.get('false_incidents_per_camera_hour')} -> {replay_b.get('false_incidents_per_camera_hour')})"
                )
    if vetoes:
        promote, reason = False, reason + "; vetoed: " + "; ".join(vetoes)
    return {
        "promote": promote,
        "reason": reason,
        "steps": steps,
        "vetoes": vetoes,
        "rule": "recall at each card's threshold, then precision, then FPR (tolerance "
        f"{eps}" + (f"; a win must also be beyond chance on the frames both scored: exact McNemar p < {alpha}, "
                    "recall on the spill frames, precision and FPR on the clean frames" if paired is not None else "")
        + "); vetoes: floor FPR, replay incident recall, replay false incidents per camera-hour",
    }


def compare_models(
    model_a: Path,
    model_b: Path,
    manifest: Path,
    *,
    split: str | None = None,
    replay: bool = False,
    replay_manifest: Path | None = None,
    fps: float = 2.0,
    local: bool = False,
    settings: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    from training.evaluate import evaluate

    ev_a = evaluate(Path(manifest), Path(model_a), split=split, progress=progress, frame_scores=True)
    ev_b = evaluate(Path(manifest), Path(model_b), split=split, progress=progress, frame_scores=True)
    paired = paired_outcomes(ev_a.pop("frame_scores"), ev_b.pop("frame_scores"), ev_a["threshold"], ev_b["threshold"])
    out: dict[str, Any] = {
        "models": {"A": {"path": str(model_a), "version": ev_a.get("model_version")}, "B": {"path": str(model_b), "version": ev_b.get("model_version")}},
        "manifest": str(manifest),
        "split": split,
        "frames": side_by_side(ev_a, ev_b, FRAME_KEYS),
        "groups": {"A": ev_a.get("groups"), "B": ev_b.get("groups")},
        "same_frames": ev_a.get("n") == ev_b.get("n") and ev_a.get("n_skipped") == ev_b.get("n_skipped"),
        "paired": paired,
        "at": datetime.now(UTC).isoformat(),
    }
    rep_a = rep_b = None
    if replay:
        from training.replay import ReplayOptions, run_replay
        from training.replay_sources import from_manifest

        if settings is None:
            from spillwatch.settings import get_settings

            settings = get_settings()
        rm = Path(replay_manifest or manifest)
        frames = from_manifest(rm, fps=fps, split=None if replay_manifest else split)
        reports = {}
        for name, m in (("A", model_a), ("B", model_b)):
            reports[name] = run_replay(frames, settings, ReplayOptions(model=Path(m), fps=fps, local=local, progress=progress, source=f"manifest:{rm}"))
        rep_a, rep_b = reports["A"]["incidents"], reports["B"]["incidents"]
        out["replay"] = {
            "manifest": str(rm),
            "incidents": side_by_side(rep_a, rep_b, REPLAY_KEYS),
            "time_to_page_s": {"A": rep_a["time_to_page_s"], "B": rep_b["time_to_page_s"]},
            "frames": side_by_side(reports["A"]["frames"], reports["B"]["frames"], FRAME_KEYS[:-1]),
        }
    out["verdict"] = verdict(ev_a, ev_b, rep_a, rep_b, paired=paired)
    return out


def promote_model(candidate: Path, target: Path, v: dict[str, Any]) -> dict[str, Any]:
    """Copy the candidate (and its card) over ``target`` when the verdict says so; the replaced
    model is kept under ``<target folder>/previous/``. The copy is loaded (sha256 vs card) before
    the function returns."""
    from spillwatch.model import SpillModel
    from spillwatch.model_card import card_path_for, load_card

    if not v.get("promote"):
        return {"promoted": False, "reason": v.get("reason")}
    candidate, target = Path(candidate), Path(target)
    card = load_card(candidate).model_copy(update={"file": target.name})  # an invalid card stops here
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = None
    if target.exists():
        bdir = target.parent / "previous" / stamp
        bdir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, bdir / target.name)
        if card_path_for(target).exists():
            shutil.copy2(card_path_for(target), bdir / card_path_for(target).name)
        backup = str(bdir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copy2(candidate, tmp)
    tmp.replace(target)
    card.write(card_path_for(target))
    SpillModel.load(target)  # sha256 of the copy matches its card
    log.info("model promoted", candidate=str(candidate), target=str(target), version=card.version, backup=backup)
    return {"promoted": True, "target": str(target), "version": card.version, "previous": backup}


def write_markdown(res: dict[str, Any], path: Path) -> None:
    def f(v: Any) -> str:
        if v is None:
            return "—"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = [
        f"# Model comparison: A = {res['models']['A']['version']} vs B = {res['models']['B']['version']}",
        "",
        f"Evaluation set: `{res['manifest']}`" + (f" (split {res['split']})" if res.get("split") else ""),
        "",
        f"**Verdict: {'promote B' if res['verdict']['promote'] else 'keep A'}** — {res['verdict']['reason']}",
        "",
        f"Rule: {res['verdict']['rule']}.",
        "",
        "| metric | A | B | Δ (B−A) | better |",
        "|---|---|---|---|---|",
    ]
    for k, row in res["frames"].items():
        lines.append(f"| {k} | {f(row['A'])} | {f(row['B'])} | {f(row['delta'])} | {row['better'] or ''} |")
    pr = res.get("paired")
    if pr:
        sp, cl = pr["spill"], pr["clean"]
        lines += ["", f"Paired, on the frames both scored: of {sp['frames']} spill frames, {sp['found_only_by_A']} found only by A "
                      f"and {sp['found_only_by_B']} only by B (McNemar p = {sp['p_value']:.3g}); of {cl['frames']} clean frames, "
                      f"{cl['flagged_only_by_A']} flagged only by A and {cl['flagged_only_by_B']} only by B (p = {cl['p_value']:.3g})."]
    if "replay" in res:
        lines += ["", f"## Replay (`{res['replay']['manifest']}`)", "", "| incident metric | A | B | Δ |", "|---|---|---|---|"]
        for k, row in res["replay"]["incidents"].items():
            lines.append(f"| {k} | {f(row['A'])} | {f(row['B'])} | {f(row['delta'])} |")
        ttp = res["replay"]["time_to_page_s"]
        lines.append(f"| time to page median (s) | {f(ttp['A']['median'])} | {f(ttp['B']['median'])} | |")
    if res.get("promotion"):
        lines += ["", f"Promotion: `{json.dumps(res['promotion'])}`"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
