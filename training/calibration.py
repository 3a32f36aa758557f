"""Pure calibration and threshold choice (numpy only, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def nll(logits: np.ndarray, y: np.ndarray, temperature: float, weights: np.ndarray | None = None) -> float:
    p = np.clip(sigmoid(logits / temperature), 1e-7, 1 - 1e-7)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    if weights is None:
        return float(loss.mean())
    return float((loss * weights).sum() / weights.sum())


def fit_temperature(logits: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                    lo: float = 0.05, hi: float = 20.0) -> float:
    """Temperature T > 0 minimising the (weighted) NLL of sigmoid(logit / T): grid on log T, then
    golden-section refinement. Returns 1.0 for an empty or one-class set (nothing to calibrate)."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if logits.size == 0 or y.min() == y.max():
        return 1.0
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), 81))
    losses = [nll(logits, y, t, weights) for t in grid]
    k = int(np.argmin(losses))
    a, b = np.log(grid[max(k - 1, 0)]), np.log(grid[min(k + 1, len(grid) - 1)])
    g = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - g * (b - a), a + g * (b - a)
        if nll(logits, y, np.exp(c), weights) < nll(logits, y, np.exp(d), weights):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))


def threshold_for_recall(pos_scores: np.ndarray, target_recall: float) -> float | None:
    """Highest threshold t with recall (fraction of positives scoring >= t) >= target; None without positives."""
    s = np.sort(np.asarray(pos_scores, dtype=np.float64))
    if s.size == 0:
        return None
    k = int(np.floor((1.0 - target_recall) * s.size + 1e-9))  # positives we may miss
    return float(s[min(k, s.size - 1)])


def threshold_for_fpr(neg_scores: np.ndarray, max_fpr: float) -> float | None:
    """Lowest threshold t (just above a negative's score) with FPR (negatives scoring >= t) <= max_fpr."""
    s = np.sort(np.asarray(neg_scores, dtype=np.float64))[::-1]
    if s.size == 0:
        return None
    allowed = int(np.floor(max_fpr * s.size + 1e-9))  # negatives that may score >= t
    if allowed >= s.size:
        return 0.0
    return float(np.nextafter(s[allowed], np.inf))


def midpoint_logit(lo: float, hi: float) -> float:
    """The probability halfway between ``lo`` and ``hi`` in logit space (``lo`` when they are equal)."""
    if lo >= hi:
        return lo
    a, b = (float(np.log(v / (1.0 - v))) for v in np.clip([lo, hi], 1e-6, 1 - 1e-6))
    return float(sigmoid(np.array((a + b) / 2)))


@dataclass
class ThresholdChoice:
    threshold: float
    rule: str
    recall_thresholds: dict[str, float | None] = field(default_factory=dict)
    floor_threshold: float | None = None
    notes: list[str] = field(default_factory=list)
    caps: dict[str, float | None] = field(default_factory=dict)


def choose_threshold(
    pos_groups: dict[str, np.ndarray],
    floor_neg: np.ndarray,
    target_recall: float = 0.97,
    max_floor_fpr: float = 0.01,
    neg_caps: dict[str, tuple[np.ndarray, float]] | None = None,
    margin: float = 1e-3,
    group_targets: dict[str, float] | None = None,
    weights: dict[str, float] | None = None,
) -> ThresholdChoice:
    """The decision threshold: the lowest of the per-group thresholds that reach ``target_recall``
    (so the recall target holds in every group, e.g. each liquid), then raised if needed so the
    false-positive rate on the hard negatives stays within its cap: the floor photos at
    ``max_floor_fpr`` and each ``neg_caps`` set (scores, max FPR), when that breaks no more than it
    mends (below). ``margin`` keeps a cap threshold clear of the negative it sits on (int8 and
    float rounding must not flip it). ``group_targets`` gives a group its own recall target (e.g.
    wet-floor photos 0.8); the others use ``target_recall``.

    When no threshold meets every target and every cap (the caps would push it above a recall
    group's threshold), the threshold is the one that breaks the fewest of them, each recall group and
    each cap counted with its ``weights`` entry (default 1; e.g. the synthetic sets count less than
    the real ones), ties going to the one that breaks fewer caps. What is still tied: if the tied
    thresholds keep every recall target, every threshold between the lowest and the highest of them
    breaks the same caps, and the threshold is their middle in logit space (the largest margin to the
    cap's negative below and the recall group's positive above, each one held-out frame); if they
    break a recall target, the lowest (most recall). The notes name every
    target and cap it breaks."""
    targets = group_targets or {}
    per = {name: threshold_for_recall(s, targets.get(name, target_recall)) for name, s in pos_groups.items()}
    valid = [t for t in per.values() if t is not None]
    t_recall = min(valid) if valid else 0.5
    caps: dict[str, float | None] = {"floor": threshold_for_fpr(floor_neg, max_floor_fpr)}
    for name, (scores, fpr) in (neg_caps or {}).items():
        caps[name] = threshold_for_fpr(scores, fpr)
    caps = {k: (None if v is None else (v if v == 0.0 else v + margin)) for k, v in caps.items()}
    t_floor = caps["floor"]
    rule = f"min over groups of recall>={target_recall}"
    if targets:
        rule += " (" + ", ".join(f"{k}>={v}" for k, v in sorted(targets.items())) + ")"
    choice = ThresholdChoice(threshold=t_recall, rule=rule,
                             recall_thresholds=per, floor_threshold=t_floor)
    binding = max(((v, k) for k, v in caps.items() if v is not None), default=None)
    if binding is not None and binding[0] > t_recall:
        w = weights or {}
        valid_caps = {k: v for k, v in caps.items() if v is not None}
        valid_rec = {k: v for k, v in per.items() if v is not None}

        def broken(t: float) -> tuple[float, list[str], list[str]]:
            """(weighted cost, recall groups broken, caps broken) at threshold t."""
            rec = [k for k, v in valid_rec.items() if t > v]
            cap = [k for k, v in valid_caps.items() if t < v]
            return sum(w.get(k, 1.0) for k in rec) + sum(w.get(k, 1.0) for k in cap), rec, cap

        candidates = sorted({*valid_caps.values(), *valid_rec.values()})
        at = {t: broken(t) for t in candidates}
        fewest = min((b[0], len(b[2])) for b in at.values())
        tied = [t for t, b in at.items() if (b[0], len(b[2])) == fewest]
        keeps_recall = [t for t in tied if not at[t][1]]
        if keeps_recall:
            # every threshold from the lowest to the highest tied one keeps every recall target and
            # breaks the same caps (the broken caps can only shrink as t rises and are the same at
            # both ends). Both ends sit on one held-out frame each (the lowest on a cap's negative,
            # the highest on a recall group's last kept positive), so take the middle (in logit
            # space, the model's own scale): the largest margin to both.
            best = midpoint_logit(min(keeps_recall), max(keeps_recall))
        else:
            best = min(tied)  # a recall target is broken either way: keep the most recall
        cost, rec, cap = broken(best)
        names = [f"recall target of '{k}'" for k in rec] + [f"FPR cap '{k}'" for k in cap]
        choice.threshold = best
        if best == binding[0]:
            choice.rule += f", raised by the '{binding[1]}' false-positive cap"
        else:
            choice.rule += ", caps and targets in conflict: the threshold that breaks the fewest (weighted)"
        choice.notes.append(
            f"no threshold meets every target and cap; {best:.4f} breaks (weight {cost:g}): " + "; ".join(names)
        )
        if len(keeps_recall) > 1:
            choice.notes.append(f"every threshold from {min(keeps_recall):.4f} to {max(keeps_recall):.4f} breaks the "
                                f"same; {best:.4f} is their middle in logit space")
    choice.caps = caps
    choice.threshold = float(min(max(choice.threshold, 1e-4), 0.9999))
    return choice
