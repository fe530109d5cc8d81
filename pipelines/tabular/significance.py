"""Paired tests of "the challenger predicts better than the champion" on the same test rows,
for the promotion gate of tabular models, with the forecasting gate's outcomes
(``pipelines.significance.Decision``: ``promote``, ``keep``, ``insufficient-data``).

- Classification (and anomaly detection with labels): exact one-sided McNemar test on the
  rows where exactly one model is right. ``b`` = champion wrong and challenger right, ``c`` =
  the reverse; under "no difference" ``b ~ Binomial(b + c, 1/2)``, and ``p = P(X >= b)``.
  The statistic reported is ``(b - c) / sqrt(b + c)``.
- Regression: the squared-error differential ``e_champion² - e_challenger²`` through
  ``pipelines.significance.diebold_mariano`` with ``h = 1``, which there is the one-sided
  paired t-test (``mean(d) / (sd(d) / sqrt(n))`` on ``n - 1`` degrees of freedom).
- ``bootstrap=True``: a paired bootstrap of the mean per-row loss differential ``d`` instead,
  on the log-loss of the true class for classifiers and on squared errors for regressors.
  ``d`` is resampled with replacement (rows keep their pair); the centred one-sided p-value is
  ``(1 + #{mean(d*) - mean(d) >= mean(d)}) / (resamples + 1)``, i.e. how often a resample
  shifted to "no difference" is at least as far from 0 as the observed mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from pipelines.significance import Decision, SignificanceResult, diebold_mariano

LOG_LOSS_EPS = 1e-15  # probabilities are clipped to [eps, 1] (scikit-learn's log_loss clips too)


def mcnemar(
    y_true: ArrayLike,
    champion_pred: ArrayLike,
    challenger_pred: ArrayLike,
    *,
    alpha: float = 0.05,
    min_samples: int = 30,
) -> SignificanceResult:
    """Exact one-sided McNemar test of "the challenger's labels are right more often".
    ``mean_loss_diff`` is the drop in error rate (``(b - c) / n``)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y, champ, chall = (np.asarray(a, dtype=object).ravel()
                       for a in (y_true, champion_pred, challenger_pred))
    if not y.size == champ.size == chall.size:
        raise ValueError(f"labels and predictions must pair up: {y.size}, {champ.size} and "
                         f"{chall.size} values")
    n = int(y.size)
    champ_right, chall_right = champ == y, chall == y
    b = int((~champ_right & chall_right).sum())
    c = int((champ_right & ~chall_right).sum())
    diff = (b - c) / n if n else float("nan")

    def result(decision: Decision, reason: str, stat: float = np.nan,
               p: float = np.nan) -> SignificanceResult:
        return SignificanceResult(decision, float(stat), float(p), n, 0, diff, 1, alpha, reason)

    if n < max(min_samples, 1):
        return result(Decision.INSUFFICIENT_DATA,
                      f"{n} labelled test rows, at least {min_samples} needed")
    if b + c == 0:
        return result(Decision.KEEP, f"the two models agree on all {n} rows: no test, "
                                     "champion kept")
    statistic = (b - c) / np.sqrt(b + c)
    p_value = float(stats.binom.sf(b - 1, b + c, 0.5))
    where = (f"McNemar exact one-sided p={p_value:.4g}, challenger alone right on {b} rows, "
             f"champion alone on {c}, n={n}")
    if p_value < alpha:
        return result(Decision.PROMOTE, f"challenger significantly better ({where} < "
                                        f"alpha={alpha}; error rate down {diff:.4g})",
                      statistic, p_value)
    better = "better" if b > c else "worse or equal"
    return result(Decision.KEEP, f"challenger {better} but not significantly ({where} >= "
                                 f"alpha={alpha})", statistic, p_value)


def paired_squared_errors(
    y_true: ArrayLike,
    champion_pred: ArrayLike,
    challenger_pred: ArrayLike,
    *,
    alpha: float = 0.05,
    min_samples: int = 30,
) -> SignificanceResult:
    """One-sided paired t-test on squared errors (Diebold–Mariano at ``h = 1``)."""
    y = np.asarray(y_true, dtype=float).ravel()
    champ = y - np.asarray(champion_pred, dtype=float).ravel()
    chall = y - np.asarray(challenger_pred, dtype=float).ravel()
    return diebold_mariano(champ, chall, h=1, loss="squared", alpha=alpha,
                           min_samples=min_samples)


def row_log_loss(y_true: ArrayLike, answers: pd.DataFrame) -> np.ndarray:
    """``-log p(true class)`` per row from a classifier's ``proba_<class>`` columns
    (``TabularBundle.predict``); a label without a column has probability 0."""
    y = np.asarray(y_true, dtype=object).ravel()
    if len(answers) != y.size:
        raise ValueError(f"labels and predictions must pair up: {y.size} and {len(answers)} rows")
    columns = np.array([f"proba_{label}" for label in y], dtype=object)
    known = [c for c in dict.fromkeys(columns) if c in answers.columns]
    if not known:
        raise ValueError(f"no probability column for the labels {sorted(set(y.tolist()))[:5]}: "
                         f"the answers have {[c for c in answers if c.startswith('proba_')]}")
    p = np.zeros(y.size)
    for column in known:
        rows = columns == column
        p[rows] = answers[column].to_numpy(float)[rows]
    return -np.log(np.clip(p, LOG_LOSS_EPS, 1.0))


def paired_bootstrap(
    d: ArrayLike,
    *,
    loss: str,
    alpha: float = 0.05,
    min_samples: int = 30,
    resamples: int = 10_000,
    seed: int = 0,
) -> SignificanceResult:
    """One-sided paired bootstrap of "the mean loss differential ``d`` (champion minus
    challenger, per row) is above 0", ``resamples`` seeded resamples of the rows."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    d = np.asarray(d, dtype=float).ravel()
    keep = np.isfinite(d)
    d, dropped = d[keep], int((~keep).sum())
    n = int(d.size)
    mean = float(d.mean()) if n else float("nan")

    def result(decision: Decision, reason: str, p: float = np.nan) -> SignificanceResult:
        stat = mean if np.isfinite(p) else np.nan  # the observed mean, where a test ran
        return SignificanceResult(decision, stat, float(p), n, dropped, mean, 1, alpha, reason)

    if n < max(min_samples, 2):
        return result(Decision.INSUFFICIENT_DATA,
                      f"{n} labelled test rows, at least {max(min_samples, 2)} needed")
    if not d.any():
        return result(Decision.KEEP, f"identical {loss} on all {n} rows: no test, champion kept")
    rng = np.random.default_rng(seed)
    exceed, left = 0, resamples
    while left:  # chunks of rows x resamples bounded to ~8 MB of indices
        size = min(left, max(1, 1_000_000 // n))
        means = d[rng.integers(0, n, size=(size, n))].mean(axis=1)
        exceed += int(np.count_nonzero(means >= 2 * mean))  # mean* - mean >= mean
        left -= size
    p_value = (1 + exceed) / (resamples + 1)
    where = (f"paired bootstrap of mean {loss} reduction {mean:.4g}, one-sided p={p_value:.4g}, "
             f"{resamples} resamples, n={n}")
    if p_value < alpha:
        return result(Decision.PROMOTE, f"challenger significantly better ({where} < "
                                        f"alpha={alpha})", p_value)
    better = "better" if mean > 0 else "worse or equal"
    return result(Decision.KEEP, f"challenger {better} but not significantly ({where} >= "
                                 f"alpha={alpha})", p_value)


def compare_on_test(
    task: str,
    y_true: ArrayLike,
    champion: pd.DataFrame,
    challenger: pd.DataFrame,
    *,
    bootstrap: bool = False,
    alpha: float = 0.05,
    min_samples: int = 30,
) -> SignificanceResult:
    """The test fit for ``task`` on the test split's labels and both versions' answers
    (``TabularBundle.predict`` frames): McNemar on the labels or, with ``bootstrap``, the
    paired bootstrap on per-row log-loss for classifiers; the paired t-test or the paired
    bootstrap on squared errors for regressors; McNemar for anomaly detectors."""
    kw: dict[str, Any] = {"alpha": alpha, "min_samples": min_samples}
    if task == "classification" and bootstrap:
        d = row_log_loss(y_true, champion) - row_log_loss(y_true, challenger)
        return paired_bootstrap(d, loss="log-loss", **kw)
    if task in ("classification", "anomaly"):
        if bootstrap:
            raise ValueError("task: anomaly gives no probabilities to bootstrap log-loss on; "
                             "its promotion test is McNemar's (bootstrap: false)")
        return mcnemar(y_true, champion["prediction"], challenger["prediction"], **kw)
    if task == "regression":
        if bootstrap:
            y = np.asarray(y_true, dtype=float).ravel()
            d = ((y - champion["prediction"].to_numpy(float)) ** 2
                 - (y - challenger["prediction"].to_numpy(float)) ** 2)
            return paired_bootstrap(d, loss="squared error", **kw)
        return paired_squared_errors(y_true, champion["prediction"], challenger["prediction"],
                                     **kw)
    raise ValueError(f"task: {task!r} has no tabular promotion test (classification, "
                     "regression, anomaly)")
