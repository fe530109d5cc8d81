"""Diebold–Mariano promotion test: decisions, edge cases and a hand-computed statistic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pipelines.significance import Decision, diebold_mariano, long_run_variance

# Absolute loss: champion |e| = 2 3 1 4 2 3, challenger |e| = 1 1 1 2 2 1, so d = 1 2 0 2 0 2.
CHAMPION = [2.0, -3.0, 1.0, 4.0, -2.0, 3.0]
CHALLENGER = [1.0, -1.0, 1.0, 2.0, -2.0, 1.0]


def ma_errors(rng: np.random.Generator, n: int, h: int, scale: float = 1.0) -> np.ndarray:
    """Errors of an h-step forecast: an MA(h-1) process (overlapping shocks)."""
    shocks = rng.normal(scale=scale, size=n + h - 1)
    return np.convolve(shocks, np.ones(h), mode="valid")


def test_identical_errors_keep_the_champion_without_crashing() -> None:
    errors = np.random.default_rng(0).normal(size=50)
    res = diebold_mariano(errors, errors.copy())
    assert res.decision is Decision.KEEP and not res.promote
    assert math.isnan(res.statistic) and math.isnan(res.p_value)
    assert res.mean_loss_diff == 0.0 and res.n == 50
    assert "no variance" in res.reason


def test_large_consistent_gain_promotes() -> None:
    rng = np.random.default_rng(1)
    actual_noise = rng.normal(size=200)
    res = diebold_mariano(actual_noise * 3.0, actual_noise + rng.normal(scale=0.2, size=200))
    assert res.decision is Decision.PROMOTE and res.promote
    assert res.p_value < 1e-6 and res.statistic > 0 and res.mean_loss_diff > 0
    assert "significantly better" in res.reason


def test_worse_challenger_is_not_promoted() -> None:
    rng = np.random.default_rng(2)
    champion = rng.normal(size=120)
    res = diebold_mariano(champion, champion * 1.5 + rng.normal(scale=0.1, size=120))
    assert res.decision is Decision.KEEP
    assert res.statistic < 0 and res.p_value > 0.9
    assert "worse or equal" in res.reason


def test_small_gain_on_noise_is_not_enough() -> None:
    rng = np.random.default_rng(3)
    res = diebold_mariano(rng.normal(size=60), rng.normal(scale=0.98, size=60))
    assert res.decision is Decision.KEEP


@pytest.mark.parametrize(("n", "h", "min_samples"), [(5, 1, 30), (0, 1, 30), (8, 6, 2)])
def test_tiny_samples_are_insufficient(n: int, h: int, min_samples: int) -> None:
    rng = np.random.default_rng(4)
    res = diebold_mariano(rng.normal(size=n) * 5, rng.normal(size=n), h=h, min_samples=min_samples)
    assert res.decision is Decision.INSUFFICIENT_DATA and not res.promote
    assert math.isnan(res.p_value) and res.n == n


def test_nan_pairs_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(5)
    champion, challenger = rng.normal(size=40) * 3, rng.normal(size=40)
    champion[[1, 7]] = np.nan
    challenger[[7, 20, 30]] = np.nan
    res = diebold_mariano(champion, challenger)
    assert res.n == 36 and res.dropped == 4
    assert "dropped 4 pair(s) with NaN" in res.reason
    nan_dropped = diebold_mariano(challenger * 10, challenger, min_samples=40)
    assert nan_dropped.decision is Decision.INSUFFICIENT_DATA and nan_dropped.dropped == 3


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="pair up"):
        diebold_mariano([1.0, 2.0], [1.0])


def test_hand_computed_statistic_h1() -> None:
    # d = 1 2 0 2 0 2: mean 7/6; gamma_0 = (1+25+49+25+49+25)/36/6 = 174/216.
    # DM = (7/6) / sqrt(174/216/6); HLN factor sqrt((6+1-2)/6); t with 5 df.
    dm = (7 / 6) / math.sqrt(174 / 216 / 6)
    expected = dm * math.sqrt(5 / 6)
    res = diebold_mariano(CHAMPION, CHALLENGER, loss="absolute", min_samples=5)
    assert res.statistic == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(2.906592, abs=1e-6)
    assert res.p_value == pytest.approx(stats.t.sf(expected, df=5), rel=1e-12)
    assert res.decision is Decision.PROMOTE and res.mean_loss_diff == pytest.approx(7 / 6)


def test_hand_computed_statistic_h2_falls_back_to_bartlett() -> None:
    # gamma_1 = (-5-35-35-35-35)/36/6 = -145/216; uniform: 174/216 - 290/216 < 0, so the
    # Bartlett weight 1/2 is used: 174/216 - 145/216 = 29/216.
    assert long_run_variance(np.array([1.0, 2, 0, 2, 0, 2]), 2) == pytest.approx(-116 / 216)
    dm = (7 / 6) / math.sqrt(29 / 216 / 6)
    expected = dm * math.sqrt((6 + 1 - 4 + 2 * 1 / 6) / 6)
    res = diebold_mariano(CHAMPION, CHALLENGER, h=2, loss="absolute", min_samples=5)
    assert res.statistic == pytest.approx(expected, rel=1e-12)
    assert "Bartlett" in res.reason


def test_h_step_autocorrelation_is_accounted_for() -> None:
    """Equal-accuracy MA(h-1) errors: with h the false-promotion rate stays near alpha;
    ignoring the autocorrelation (h=1) promotes far more often."""
    rng = np.random.default_rng(6)
    h, n, reps = 6, 120, 300
    with_h = naive = 0
    for _ in range(reps):
        champion, challenger = ma_errors(rng, n, h), ma_errors(rng, n, h)
        common = ma_errors(rng, n, h, scale=2.0)
        with_h += diebold_mariano(champion + common, challenger + common, h=h).promote
        naive += diebold_mariano(champion + common, challenger + common, h=1).promote
    assert with_h / reps < 0.1
    assert naive / reps > 2 * max(with_h / reps, 0.02)


def test_h_step_real_gain_still_promotes() -> None:
    rng = np.random.default_rng(7)
    h, n = 6, 400
    common = ma_errors(rng, n, h)
    res = diebold_mariano(common + ma_errors(rng, n, h), common + 0.3 * ma_errors(rng, n, h), h=h)
    assert res.decision is Decision.PROMOTE and res.h == h
    assert res.as_dict()["decision"] == "promote"


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="h must be"):
        diebold_mariano([1.0], [1.0], h=0)
    with pytest.raises(ValueError, match="alpha"):
        diebold_mariano([1.0], [1.0], alpha=1.5)
    with pytest.raises(ValueError, match="unknown loss"):
        diebold_mariano([1.0], [1.0], loss="huber")  # type: ignore[arg-type]
