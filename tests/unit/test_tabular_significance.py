"""The tabular promotion tests against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pipelines.significance import Decision
from pipelines.tabular.significance import (
    compare_on_test,
    mcnemar,
    paired_bootstrap,
    paired_squared_errors,
    row_log_loss,
)


def _pairs(b: int, c: int, agree: int) -> tuple[list[int], list[int], list[int]]:
    """Labels, champion and challenger predictions: ``b`` rows only the challenger gets
    right, ``c`` only the champion, ``agree`` both (half right, half wrong)."""
    y = [1] * (b + c + agree)
    champ = [0] * b + [1] * c + [1] * (agree // 2) + [0] * (agree - agree // 2)
    chall = [1] * b + [0] * c + [1] * (agree // 2) + [0] * (agree - agree // 2)
    return y, champ, chall


def test_mcnemar_exact_p_value_by_hand():
    # b=8, c=2: P(X >= 8 | 10, 1/2) = (45 + 10 + 1) / 1024
    y, champ, chall = _pairs(8, 2, 30)
    r = mcnemar(y, champ, chall, alpha=0.05)
    assert r.p_value == pytest.approx(56 / 1024, abs=1e-12)
    assert r.statistic == pytest.approx(6 / math.sqrt(10))
    assert r.mean_loss_diff == pytest.approx(6 / 40)
    assert (r.n, r.decision) == (40, Decision.KEEP)  # 0.0547 >= 0.05
    assert mcnemar(y, champ, chall, alpha=0.1).decision is Decision.PROMOTE


def test_mcnemar_promotes_a_clearly_better_challenger_and_keeps_a_worse_one():
    y, champ, chall = _pairs(9, 1, 30)  # p = (10 + 1) / 1024
    r = mcnemar(y, champ, chall)
    assert r.p_value == pytest.approx(11 / 1024, abs=1e-12)
    assert r.decision is Decision.PROMOTE and "significantly better" in r.reason
    worse = mcnemar(y, chall, champ)  # roles swapped: b=1, c=9, p = 1 - 1/1024
    assert worse.p_value == pytest.approx(1023 / 1024, abs=1e-12)
    assert worse.decision is Decision.KEEP and "worse or equal" in worse.reason


def test_mcnemar_string_labels_agreement_and_too_few_rows():
    y = ["fail", "ok"] * 20
    assert mcnemar(y, y, y).decision is Decision.KEEP  # agree everywhere: no test
    short = mcnemar(y[:10], y[:10], y[:10])
    assert short.decision is Decision.INSUFFICIENT_DATA and "10 labelled" in short.reason
    with pytest.raises(ValueError, match="pair up"):
        mcnemar(y, y[:-1], y)


def test_paired_squared_errors_is_the_paired_t_test_by_hand():
    # squared errors champion [1, 4, ...], challenger [0, 1, ...]: d = [1, 3] * 3,
    # mean 2, sample sd sqrt(6/5), t = 2 / (sqrt(6/5) / sqrt(6)) = sqrt(20)
    y = np.zeros(6)
    champ = np.array([1.0, 2.0] * 3)
    chall = np.array([0.0, 1.0] * 3)
    r = paired_squared_errors(y, champ, chall, min_samples=6)
    assert r.statistic == pytest.approx(math.sqrt(20))
    assert r.mean_loss_diff == pytest.approx(2.0)
    # Student t with 5 df: P(T > t) = 1/2 - (θ + sinθ cosθ (1 + 2/3 cos²θ)) / π, θ = atan(t/√5);
    # here t/√5 = 2, sinθ cosθ = 2/5, cos²θ = 1/5
    assert r.p_value == pytest.approx(0.5 - (math.atan(2) + 0.4 * (1 + 2 / 15)) / math.pi)
    assert r.decision is Decision.PROMOTE


def _labels(values) -> pd.DataFrame:
    return pd.DataFrame({"prediction": values})


def _binary(p1: list[float]) -> pd.DataFrame:
    """A binary classifier's answers with P(class 1) = ``p1``."""
    p1 = np.asarray(p1, dtype=float)
    return pd.DataFrame({"prediction": (p1 >= 0.5).astype(int), "proba_0": 1 - p1,
                         "proba_1": p1})


def test_row_log_loss_is_minus_log_of_the_true_class_probability():
    answers = _binary([0.9, 0.2, 0.0])
    loss = row_log_loss([1, 1, 0], answers)
    assert loss == pytest.approx([-math.log(0.9), -math.log(0.2), 0.0])
    assert row_log_loss([0], _binary([1.0]))[0] == pytest.approx(-math.log(1e-15))  # clipped
    with pytest.raises(ValueError, match="no probability column for the labels"):
        row_log_loss(["fail"], answers.iloc[:1])
    with pytest.raises(ValueError, match="pair up"):
        row_log_loss([1, 0], answers)


def test_bootstrap_promotes_a_challenger_better_on_two_thirds_of_the_rows():
    # d = 1 on 20 of 30 rows, 0 elsewhere: mean 2/3; a resample would need mean* >= 4/3,
    # impossible for values in {0, 1}, so no resample counts: p = 1 / (resamples + 1)
    d = [1.0] * 20 + [0.0] * 10
    r = paired_bootstrap(d, loss="log-loss", resamples=999)
    assert r.p_value == pytest.approx(1 / 1000)
    assert r.mean_loss_diff == pytest.approx(2 / 3)
    assert r.decision is Decision.PROMOTE and "significantly better" in r.reason


def test_bootstrap_keeps_a_challenger_better_on_one_row_only():
    # d = 1 on one of 30 rows: the resampled mean is K/30 with K ~ Binomial(30, 1/30) copies
    # of that row; it counts when K/30 - 1/30 >= 1/30, i.e. K >= 2
    n = 30
    exact = 1 - (1 - 1 / n) ** n - (1 - 1 / n) ** (n - 1)  # P(K >= 2) = 0.2642
    r = paired_bootstrap([1.0] + [0.0] * (n - 1), loss="log-loss", resamples=20_000)
    assert r.p_value == pytest.approx(exact, abs=0.01)
    assert r.decision is Decision.KEEP and "better but not significantly" in r.reason
    worse = paired_bootstrap([-1.0] * 20 + [0.0] * 10, loss="log-loss", resamples=999)
    assert worse.p_value == pytest.approx(1.0) and "worse or equal" in worse.reason


def test_bootstrap_identical_losses_too_few_rows_and_nan():
    assert paired_bootstrap([0.0] * 40, loss="log-loss").decision is Decision.KEEP
    short = paired_bootstrap([1.0] * 10, loss="log-loss")
    assert short.decision is Decision.INSUFFICIENT_DATA and "10 labelled" in short.reason
    assert math.isnan(short.p_value) and math.isnan(short.statistic)
    r = paired_bootstrap([1.0] * 30 + [math.nan], loss="log-loss", resamples=99)
    assert (r.n, r.dropped, r.decision) == (30, 1, Decision.PROMOTE)


def test_bootstrap_on_log_loss_through_compare_on_test():
    # the challenger says 0.9 where the champion says 0.6 for the true class on every row:
    # d = log(0.9 / 0.6) on all 40 rows (constant, so every resample equals the mean)
    y = [1, 0] * 20
    champ = _binary([0.6, 0.4] * 20)
    chall = _binary([0.9, 0.1] * 20)
    r = compare_on_test("classification", y, champ, chall, bootstrap=True)
    assert r.mean_loss_diff == pytest.approx(math.log(0.9 / 0.6))
    assert r.decision is Decision.PROMOTE
    # same labels from both models: McNemar has nothing to test
    assert compare_on_test("classification", y, champ, chall).decision is Decision.KEEP
    back = compare_on_test("classification", y, chall, champ, bootstrap=True)
    assert back.decision is Decision.KEEP and back.p_value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="anomaly gives no probabilities"):
        compare_on_test("anomaly", y, champ, chall, bootstrap=True)


def test_bootstrap_on_squared_errors_for_regression():
    # errors champion [1, 2] * 20, challenger [0, 1] * 20: d = [1, 3] * 20, always > 0
    y = np.zeros(40)
    r = compare_on_test("regression", y, _labels([1.0, 2.0] * 20), _labels([0.0, 1.0] * 20),
                        bootstrap=True)
    assert r.mean_loss_diff == pytest.approx(2.0)
    assert r.decision is Decision.PROMOTE and "squared error" in r.reason


def test_compare_on_test_picks_the_test_for_the_task():
    y, champ, chall = _pairs(9, 1, 30)
    champ, chall = _labels(champ), _labels(chall)
    assert compare_on_test("classification", y, champ, chall).p_value == pytest.approx(11 / 1024)
    assert compare_on_test("anomaly", y, champ, chall).decision is Decision.PROMOTE
    assert compare_on_test("regression", np.zeros(6), _labels([1.0, 2.0] * 3),
                           _labels([0.0, 1.0] * 3),
                           min_samples=6).statistic == pytest.approx(math.sqrt(20))
    with pytest.raises(ValueError, match="forecast"):
        compare_on_test("forecast", y, champ, chall)
