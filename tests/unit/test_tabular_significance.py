"""The tabular promotion tests against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.significance import Decision
from pipelines.tabular.significance import compare_on_test, mcnemar, paired_squared_errors


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


def test_compare_on_test_picks_the_test_for_the_task():
    y, champ, chall = _pairs(9, 1, 30)
    assert compare_on_test("classification", y, champ, chall).p_value == pytest.approx(11 / 1024)
    assert compare_on_test("anomaly", y, champ, chall).decision is Decision.PROMOTE
    assert compare_on_test("regression", np.zeros(6), [1.0, 2.0] * 3, [0.0, 1.0] * 3,
                           min_samples=6).statistic == pytest.approx(math.sqrt(20))
    with pytest.raises(ValueError, match="forecast"):
        compare_on_test("forecast", y, champ, chall)
