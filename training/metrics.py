"""Pure binary-classification metrics (no I/O). Undefined values (a zero denominator, one class only)
are ``None``, never an exception or NaN."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

_EPS = 1e-7


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def confusion(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray, threshold: float) -> Confusion:
    """Counts with the decision ``score >= threshold`` -> positive (spill)."""
    y = np.asarray(y_true, dtype=bool)
    pred = np.asarray(y_score, dtype=np.float64) >= threshold
    return Confusion(
        tp=int(np.sum(pred & y)),
        fp=int(np.sum(pred & ~y)),
        tn=int(np.sum(~pred & ~y)),
        fn=int(np.sum(~pred & y)),
    )


def rates(c: Confusion) -> dict[str, float | None]:
    precision = _ratio(c.tp, c.tp + c.fp)
    recall = _ratio(c.tp, c.tp + c.fn)
    f1 = None
    if precision is not None and recall is not None and (precision + recall) > 0:
        f1 = 2 * precision * recall / (precision + recall)
    elif precision is not None and recall is not None:
        f1 = 0.0
    return {
        "accuracy": _ratio(c.tp + c.tn, c.n),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "specificity": _ratio(c.tn, c.tn + c.fp),
        "npv": _ratio(c.tn, c.tn + c.fn),
        "fpr": _ratio(c.fp, c.fp + c.tn),
        "fnr": _ratio(c.fn, c.fn + c.tp),
    }


def log_loss(y_true: Sequence[int] | np.ndarray, y_prob: Sequence[float] | np.ndarray) -> float | None:
    y = np.asarray(y_true, dtype=np.float64)
    if y.size == 0:
        return None
    p = np.clip(np.asarray(y_prob, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def roc_auc(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties count one half); None with one class."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _desc_thresholds(s: np.ndarray) -> np.ndarray:
    return np.unique(s)[::-1]


def roc_curve(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> list[dict[str, float | None]]:
    """Points (threshold, fpr, tpr) from the strictest threshold (+inf: nothing positive) down."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    pts: list[dict[str, float | None]] = [{"threshold": math.inf, "fpr": 0.0 if n_neg else None, "tpr": 0.0 if n_pos else None}]
    for t in _desc_thresholds(s):
        pred = s >= t
        pts.append(
            {
                "threshold": float(t),
                "fpr": _ratio(int(np.sum(pred & ~y)), n_neg),
                "tpr": _ratio(int(np.sum(pred & y)), n_pos),
            }
        )
    return pts


def pr_curve(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> list[dict[str, float | None]]:
    """Points (threshold, recall, precision) for each distinct score, strictest first."""
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=np.float64)
    n_pos = int(y.sum())
    pts: list[dict[str, float | None]] = []
    for t in _desc_thresholds(s):
        pred = s >= t
        tp = int(np.sum(pred & y))
        pts.append({"threshold": float(t), "recall": _ratio(tp, n_pos), "precision": _ratio(tp, int(pred.sum()))})
    return pts


def pr_auc(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> float | None:
    """Average precision: sum over thresholds of (R_k - R_{k-1}) * P_k; None without positives."""
    y = np.asarray(y_true, dtype=bool)
    if y.size == 0 or not y.any():
        return None
    ap = 0.0
    prev_r = 0.0
    for pt in pr_curve(y, y_score):
        r, p = pt["recall"], pt["precision"]
        assert r is not None and p is not None
        ap += (r - prev_r) * p
        prev_r = r
    return float(ap)


def summary(y_true: Sequence[int] | np.ndarray, y_prob: Sequence[float] | np.ndarray, threshold: float) -> dict[str, float | int | None]:
    """The evaluation JSON's metric keys (n, threshold, tp, fp, tn, fn, rates, log_loss, roc_auc, pr_auc)."""
    c = confusion(y_true, y_prob, threshold)
    out: dict[str, float | int | None] = {"n": c.n, "threshold": float(threshold)}
    out.update(asdict(c))
    out.update(rates(c))
    out["log_loss"] = log_loss(y_true, y_prob)
    out["roc_auc"] = roc_auc(y_true, y_prob)
    out["pr_auc"] = pr_auc(y_true, y_prob)
    return out


def slice_metrics(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray, keys: Sequence[str],
                  threshold: float) -> dict[str, dict[str, float | int | None]]:
    """Per slice (e.g. each source and split) at ``threshold``: counts, recall (its spill frames), FPR
    (its clean frames), precision (within the slice) and ROC AUC. A one-class slice's ROC AUC ranks
    its frames against the other class of *all* frames given (a clean-only source against every spill
    frame, a spill-only source against every clean frame): how well that source separates.

    >>> rows = slice_metrics([1, 1, 0, 0], [0.9, 0.4, 0.2, 0.6], ["a", "a", "b", "b"], 0.5)
    >>> rows["a"]["recall"], rows["a"]["roc_auc"], rows["b"]["fpr"], rows["b"]["roc_auc"]
    (0.5, 0.75, 0.5, 0.75)
    """
    y = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=np.float64)
    k = np.asarray(list(keys), dtype=object)
    out: dict[str, dict[str, float | int | None]] = {}
    for key in sorted(set(k.tolist())):
        idx = k == key
        c = confusion(y[idx], s[idx], threshold)
        n_pos, n_neg = int(y[idx].sum()), int((~y[idx]).sum())
        if n_pos and n_neg:
            auc = roc_auc(y[idx], s[idx])
        elif n_pos:  # spill-only: against every clean frame given
            sel = idx | ~y
            auc = roc_auc(y[sel], s[sel])
        else:  # clean-only: against every spill frame given
            sel = idx | y
            auc = roc_auc(y[sel], s[sel])
        out[key] = {"n": c.n, "spill": n_pos, "clean": n_neg, "tp": c.tp, "fn": c.fn, "fp": c.fp, "tn": c.tn,
                    "recall": _ratio(c.tp, n_pos), "fpr": _ratio(c.fp, n_neg),
                    "precision": _ratio(c.tp, c.tp + c.fp), "roc_auc": auc}
    return out


# ------------------------------------------------------------------ how far a count can be trusted
# Exact (Clopper-Pearson) binomial bounds: with 19 wet-floor photos or 50 floor photos a rate is a
# coarse reading, and a safety target on it is only shown when its bound clears the target. The
# bounds are the binomial tail inverted by bisection (a few lines, exact to 1e-12); scipy would do it
# in one call but would add ~100 MB to the runtime image for that call alone.
CONFIDENCE = 0.95


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (no overflow for large n)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq, top = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    logs = [top - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq for i in range(k + 1)]
    m = max(logs)
    return min(1.0, math.exp(m) * math.fsum(math.exp(x - m) for x in logs))


def _solve_decreasing(f: Callable[[float], float], target: float) -> float:
    """The p in [0, 1] where the decreasing function f(p) equals target (bisection)."""
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-12:
        mid = (lo + hi) / 2
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided exact upper confidence bound of a rate seen k times in n: the largest rate that
    still gives k or fewer with probability 1 - confidence (0 of n at 95 %: about 3/n)."""
    _check_count(k, n, confidence)
    if k == n:
        return 1.0
    return _solve_decreasing(lambda p: _binomial_cdf(k, n, p), 1.0 - confidence)


def lower_bound(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided exact lower confidence bound of a rate seen k times in n."""
    _check_count(k, n, confidence)
    if k == 0:
        return 0.0
    return _solve_decreasing(lambda p: _binomial_cdf(k - 1, n, p), confidence)


def interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Two-sided exact (Clopper-Pearson) interval of k/n; None when n is 0.

    >>> [round(x, 4) for x in interval(17, 19)]
    [0.6686, 0.987]
    """
    if n == 0:
        return None
    tail = (1.0 + confidence) / 2
    return lower_bound(k, n, tail), upper_bound(k, n, tail)


def frames_to_show(max_rate: float, events: int = 0, confidence: float = CONFIDENCE) -> int:
    """How many frames a split needs before a rate of at most ``max_rate`` can be shown at
    ``confidence`` (one-sided) when ``events`` of them are errors (false positives for an FPR cap,
    misses for a recall target: recall >= r is a miss rate <= 1 - r).

    >>> frames_to_show(0.01), frames_to_show(0.02), frames_to_show(1 - 0.80)
    (299, 149, 14)
    """
    if not 0.0 < max_rate < 1.0:
        raise ValueError(f"max_rate must be in (0, 1), got {max_rate}")
    lo, hi = events + 1, events + 1
    while upper_bound(events, hi, confidence) > max_rate:
        lo, hi = hi, hi * 2
    while lo < hi:  # the bound falls as n grows: the first n where it is low enough
        mid = (lo + hi) // 2
        if upper_bound(events, mid, confidence) <= max_rate:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _check_count(k: int, n: int, confidence: float) -> None:
    if not (0 <= k <= n) or not 0.0 < confidence < 1.0:
        raise ValueError(f"need 0 <= k <= n and 0 < confidence < 1, got k={k}, n={n}, confidence={confidence}")


def with_intervals(rows: dict[str, dict[str, Any]], confidence: float = CONFIDENCE) -> dict[str, dict[str, Any]]:
    """``slice_metrics`` rows with the exact interval of each rate: ``recall_interval`` (tp of its
    spill frames) and ``fpr_interval`` (fp of its clean frames) as [low, high], None where the slice
    has none."""
    def pair(k: int, n: int) -> list[float] | None:
        ci = interval(k, n, confidence)
        return None if ci is None else [ci[0], ci[1]]

    return {key: {**r, "recall_interval": pair(int(r["tp"]), int(r["spill"])),
                  "fpr_interval": pair(int(r["fp"]), int(r["clean"]))} for key, r in rows.items()}


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test of two models on the same frames: of the frames exactly one of
    them gets right, ``only_a`` went to A and ``only_b`` to B; the p-value of a split at least this
    uneven if either model were as likely to be the one (a binomial test at 1/2). 1.0 with no such
    frame.

    >>> round(mcnemar_p(0, 12), 5), round(mcnemar_p(1, 4), 3)
    (0.00049, 0.375)
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts must be >= 0, got {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binomial_cdf(min(only_a, only_b), n, 0.5))
