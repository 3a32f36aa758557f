"""training.metrics and training.calibration against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training import calibration, metrics

Y = [1, 1, 1, 0, 0, 0, 1, 0]
S = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.55, 0.5]


def test_confusion_and_rates_match_hand_count() -> None:
    # thr 0.5: predicted spill = 0.9, 0.8, 0.6, 0.55, 0.5 -> TP 3 (0.9, 0.8, 0.55), FP 2 (0.6, 0.5)
    c = metrics.confusion(Y, S, 0.5)
    assert (c.tp, c.fp, c.tn, c.fn) == (3, 2, 2, 1)
    r = metrics.rates(c)
    assert r["accuracy"] == pytest.approx(5 / 8)
    assert r["precision"] == pytest.approx(3 / 5)
    assert r["recall"] == pytest.approx(3 / 4)
    assert r["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert r["specificity"] == pytest.approx(2 / 4)
    assert r["npv"] == pytest.approx(2 / 3)
    assert r["fpr"] == pytest.approx(2 / 4)
    assert r["fnr"] == pytest.approx(1 / 4)


def test_score_equal_to_threshold_counts_as_spill() -> None:
    c = metrics.confusion([1, 0], [0.5, 0.5], 0.5)
    assert (c.tp, c.fp) == (1, 1)


def test_log_loss_by_hand() -> None:
    ll = metrics.log_loss([1, 0], [0.8, 0.4])
    assert ll == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert metrics.log_loss([1], [1.0]) < 1e-6  # clipped, finite
    assert metrics.log_loss([], []) is None


def test_roc_auc_by_hand_with_ties() -> None:
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs won 3 of 4
    assert metrics.roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    assert metrics.roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.roc_auc([1, 1, 0], [0.7, 0.7, 0.7]) == pytest.approx(0.5)


def test_pr_auc_is_average_precision() -> None:
    # desc: 0.9 P (R .5, P 1), 0.5 N, 0.4 P (R 1, P 2/3), 0.1 N -> AP = .5*1 + .5*2/3
    assert metrics.pr_auc([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1]) == pytest.approx(0.5 + 1 / 3)
    assert metrics.pr_auc([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)


def test_undefined_metrics_are_none() -> None:
    only_clean = metrics.summary([0, 0, 0], [0.1, 0.7, 0.2], 0.5)
    assert only_clean["recall"] is None and only_clean["fnr"] is None
    assert only_clean["roc_auc"] is None and only_clean["pr_auc"] is None
    assert only_clean["fpr"] == pytest.approx(1 / 3)
    nothing_flagged = metrics.summary([1, 0], [0.1, 0.2], 0.5)
    assert nothing_flagged["precision"] is None and nothing_flagged["f1"] is None
    assert nothing_flagged["recall"] == 0.0
    empty = metrics.summary([], [], 0.5)
    assert empty["n"] == 0 and empty["accuracy"] is None and empty["log_loss"] is None
    only_spill = metrics.summary([1, 1], [0.9, 0.2], 0.5)
    assert only_spill["specificity"] is None and only_spill["npv"] == 0.0 and only_spill["roc_auc"] is None


def test_summary_has_every_key_of_the_evaluation_contract() -> None:
    keys = {"n", "threshold", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "f1", "specificity",
            "npv", "fpr", "fnr", "log_loss", "roc_auc", "pr_auc"}
    assert keys <= set(metrics.summary(Y, S, 0.5))


def test_curves_start_strict_and_end_permissive() -> None:
    roc = metrics.roc_curve(Y, S)
    assert roc[0]["fpr"] == 0.0 and roc[0]["tpr"] == 0.0
    assert roc[-1]["fpr"] == 1.0 and roc[-1]["tpr"] == 1.0
    pr = metrics.pr_curve(Y, S)
    assert pr[-1]["recall"] == 1.0 and pr[-1]["precision"] == pytest.approx(0.5)


def test_threshold_for_recall_and_fpr() -> None:
    pos = np.linspace(0.01, 1.0, 100)
    t = calibration.threshold_for_recall(pos, 0.97)
    assert np.mean(pos >= t) >= 0.97 and np.mean(pos >= np.nextafter(t, 2)) < 0.97
    neg = np.array([0.1, 0.2, 0.9, 0.3])
    tf = calibration.threshold_for_fpr(neg, 0.0)
    assert tf > 0.9 and np.mean(neg >= tf) == 0.0
    assert calibration.threshold_for_recall(np.array([]), 0.97) is None


def test_choose_threshold_holds_recall_in_every_group_and_respects_floor_cap() -> None:
    groups = {"a": np.linspace(0.5, 1.0, 100), "b": np.linspace(0.2, 1.0, 100)}
    c = calibration.choose_threshold(groups, np.array([0.05, 0.1]), 0.97)
    for s in groups.values():
        assert np.mean(s >= c.threshold) >= 0.97
    # a cap that conflicts with one recall group: the cap wins (one target broken either way, and a
    # tie goes to the choice that keeps the caps)
    capped = calibration.choose_threshold({"a": groups["a"]}, np.array([0.6]), 0.97, max_floor_fpr=0.0)
    assert capped.threshold > 0.6 and capped.notes and "recall target of 'a'" in capped.notes[0]
    # the same cap against two recall groups: raising it would break two targets to keep one cap,
    # so the threshold stays where both groups keep their recall and the note names the broken cap
    kept = calibration.choose_threshold(groups, np.array([0.6]), 0.97, max_floor_fpr=0.0)
    assert kept.threshold < 0.6 and all(np.mean(s >= kept.threshold) >= 0.97 for s in groups.values())
    assert kept.notes and "FPR cap 'floor'" in kept.notes[0]
    # and with both groups weighted less (synthetic sets: 0.5 together), the cap wins again
    light = calibration.choose_threshold(groups, np.array([0.6]), 0.97, max_floor_fpr=0.0, weights={"a": 0.25, "b": 0.25})
    assert light.threshold > 0.6


def test_fit_temperature_recovers_the_scale() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    y = (rng.random(z.size) < calibration.sigmoid(z)).astype(float)
    t = calibration.fit_temperature(3.0 * z, y)
    assert t == pytest.approx(3.0, rel=0.08)
    assert calibration.fit_temperature(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == 1.0


def test_slice_metrics_per_source_with_one_class_sources() -> None:
    # sources: "a" = spills 0.9, 0.8, 0.3 + clean 0.6; "b" = clean 0.2, 0.1, 0.5; "c" = spill 0.55
    keys = ["a", "a", "a", "a", "b", "b", "c", "b"]
    rows = metrics.slice_metrics(Y, S, keys, 0.5)
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a["n"], a["spill"], a["clean"], a["tp"], a["fn"], a["fp"]) == (4, 3, 1, 2, 1, 1)
    assert a["recall"] == pytest.approx(2 / 3) and a["fpr"] == 1.0 and a["precision"] == pytest.approx(2 / 3)
    assert a["roc_auc"] == pytest.approx(2 / 3)          # within the source: 0.9, 0.8 > 0.6 > 0.3
    assert b["recall"] is None and b["fpr"] == pytest.approx(1 / 3)
    # clean-only: its 3 frames against all 4 spills: every spill outranks 0.2 and 0.1; 0.5 loses to 0.3 only
    assert b["roc_auc"] == pytest.approx((4 + 4 + 3) / 12)
    # spill-only: 0.55 against all 4 clean frames (0.6 outranks it)
    assert c["recall"] == 1.0 and c["fpr"] is None and c["roc_auc"] == pytest.approx(3 / 4)


def test_exact_intervals_say_how_little_a_few_dozen_frames_show() -> None:
    # 17 of 19 wet floors found: the exact 95 % interval is the Beta quantiles
    # Beta(0.025; 17, 3) and Beta(0.975; 18, 2) (checked with mpmath's regularised incomplete beta)
    lo, hi = metrics.interval(17, 19)
    assert lo == pytest.approx(0.668623, abs=1e-6) and hi == pytest.approx(0.986988, abs=1e-6)
    # closed forms at the edges: 0 of n and n of n
    for n in (1, 14, 50, 1117):
        assert metrics.interval(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n), abs=1e-9))
        assert metrics.interval(n, n) == (pytest.approx(0.025 ** (1 / n), abs=1e-9), 1.0)
        assert metrics.upper_bound(0, n) == pytest.approx(1 - 0.05 ** (1 / n), abs=1e-9)
    # misses and hits are the same count seen from the other side
    lo2, hi2 = metrics.interval(2, 19)
    assert (lo2, hi2) == (pytest.approx(1 - hi, abs=1e-9), pytest.approx(1 - lo, abs=1e-9))
    # the observed rate lies inside, and more frames narrow the interval around the same rate
    assert lo < 17 / 19 < hi
    lo10, hi10 = metrics.interval(170, 190)
    assert lo < lo10 < 17 / 19 < hi10 < hi
    assert metrics.interval(0, 0) is None
    with pytest.raises(ValueError):
        metrics.interval(3, 2)


def test_frames_needed_to_show_a_target() -> None:
    # the rule of three: with no false positive, an FPR <= 1 % needs 299 clean frames (0 of 50 only
    # shows <= 5.8 %), <= 2 % needs 149; recall >= 0.80 with no miss needs 14 spill frames
    assert metrics.frames_to_show(0.01) == 299 and metrics.frames_to_show(0.02) == 149
    assert metrics.frames_to_show(1 - 0.80) == 14
    assert metrics.upper_bound(0, 50) == pytest.approx(0.0582, abs=1e-4)
    # one error allowed costs more frames; at the answer the bound is met, one frame fewer it is not
    n = metrics.frames_to_show(0.01, events=1)
    assert n > 299
    assert metrics.upper_bound(1, n) <= 0.01 < metrics.upper_bound(1, n - 1)
    # 17 of 19 does not show recall >= 0.80 at 95 %: its one-sided lower bound is 0.70
    assert metrics.lower_bound(17, 19) == pytest.approx(0.7042, abs=1e-4)


def test_mcnemar_exact_p_value() -> None:
    # a binomial test at 1/2 of the frames exactly one model gets right, two-sided
    assert metrics.mcnemar_p(0, 12) == pytest.approx(2 * 0.5**12)
    assert metrics.mcnemar_p(1, 4) == pytest.approx(2 * (1 + 5) / 32)  # P(X <= 1), X ~ Bin(5, 1/2)
    assert metrics.mcnemar_p(4, 1) == metrics.mcnemar_p(1, 4)
    assert metrics.mcnemar_p(3, 3) == 1.0 and metrics.mcnemar_p(0, 0) == 1.0
    assert metrics.mcnemar_p(0, 5) > 0.05 > metrics.mcnemar_p(0, 6)  # six one-sided frames are the least that count
    with pytest.raises(ValueError):
        metrics.mcnemar_p(-1, 2)
