"""Metrics against hand-computed values."""

import numpy as np
import pytest

from pipelines import evaluation as ev

ACTUAL = np.array([[1.0, 2.0, 0.0], [4.0, 5.0, 6.0]])
PRED = np.array([[2.0, 2.0, 1.0], [3.0, 7.0, 6.0]])
# errors: [[-1, 0, -1], [1, -2, 0]] -> |e| = [[1,0,1],[1,2,0]], sum 5, n 6


def test_mae_mse_rmse():
    assert ev.mae(ACTUAL, PRED) == pytest.approx(5 / 6)
    assert ev.mse(ACTUAL, PRED) == pytest.approx((1 + 0 + 1 + 1 + 4 + 0) / 6)
    assert ev.rmse(ACTUAL, PRED) == pytest.approx(np.sqrt(7 / 6))
    assert ev.mae(ACTUAL, PRED, axis=0).tolist() == pytest.approx([1.0, 1.0, 0.5])


def test_mape_skips_zero_actuals_and_counts_them():
    value, skipped = ev.mape(ACTUAL, PRED)
    # non-zero actuals: 1,2,4,5,6 with |e| 1,0,1,2,0 -> ratios 1, 0, .25, .4, 0
    assert value == pytest.approx(100 * (1 + 0 + 0.25 + 0.4 + 0) / 5)
    assert skipped == 1


def test_smape_wape():
    # pairs: (1,2) 2/3, (2,2) 0, (0,1) 2, (4,3) 2/7, (5,7) 4/12, (6,6) 0
    expected = 100 * (2 / 3 + 0 + 2 + 2 / 7 + 4 / 12 + 0) / 6
    assert ev.smape(ACTUAL, PRED) == pytest.approx(expected)
    assert ev.wape(ACTUAL, PRED) == pytest.approx(100 * 5 / 18)


def test_mase_scale_and_value():
    train = np.array([1.0, 3.0, 2.0, 5.0])  # season 1: |2|, |1|, |3| -> mean 2
    assert ev.mase_scale(train, 1) == pytest.approx(2.0)
    result = ev.evaluate(ACTUAL, PRED, None, None, mase_denominator=2.0)
    assert result.overall["mase"] == pytest.approx((5 / 6) / 2)
    with pytest.raises(ValueError, match="more than 4"):
        ev.mase_scale(train, 4)
    with pytest.raises(ValueError, match="constant"):
        ev.mase_scale(np.ones(10), 1)


def test_coverage_overall_and_per_step():
    lower = PRED - 0.5
    upper = PRED + 0.5
    # inside when |e| <= .5: [[F, T, F], [F, F, T]]
    assert ev.coverage(ACTUAL, lower, upper) == pytest.approx(2 / 6)
    result = ev.evaluate(ACTUAL, PRED, lower, upper, 1.0)
    assert result.per_step["coverage"] == pytest.approx([0.0, 0.5, 0.5])
    assert result.mape_zero_actuals_skipped == 1


def test_evaluate_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        ev.evaluate(ACTUAL, PRED[:, :2], None, None, 1.0)


def test_actual_windows():
    y = np.arange(10.0)
    assert ev.actual_windows(y, np.array([2, 5]), 3).tolist() == [[2, 3, 4], [5, 6, 7]]
